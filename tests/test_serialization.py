"""ranvier.save / ranvier.load: the safetensors format, atomic writes and validation of bad files.

The byte layout is checked against the format as written down here, independently of
ranvier.serialization (https://github.com/huggingface/safetensors#format):
8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON (padded with spaces so that
8 + N is a multiple of 8), then the raw little-endian C-order tensor data.
"""

import json
import os
import stat
import struct

import numpy as np
import pytest

import ranvier

# ------------------------------------------------------------------ an independent writer/reader


def spec_file_bytes(header: dict, data: bytes, pad: bool = True) -> bytes:
    """A safetensors file built by hand from a header dict and the data buffer."""
    text = json.dumps(header).encode("utf-8")
    if pad:
        while (8 + len(text)) % 8:
            text += b" "
    return struct.pack("<Q", len(text)) + text + data


def spec_parse(raw: bytes):
    """(header dict, data bytes) of a safetensors file, parsed by hand."""
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length].decode("utf-8")), raw[8 + length:], length


def write_bytes(tmp_path, raw: bytes, name="bad.safetensors"):
    path = tmp_path / name
    path.write_bytes(raw)
    return path


# ------------------------------------------------------------------------------- round trips

ROUND_TRIP_ARRAYS = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "f64": np.linspace(-1, 1, 10, dtype=np.float64).reshape(2, 5),
    "i64": np.array([-(2 ** 62), -1, 0, 1, 2 ** 62], dtype=np.int64),
    "u8": np.arange(256, dtype=np.uint8),
    "bool": np.array([[True, False, True], [False, False, True]]),
    "i32": np.array([-7, 3, 2 ** 31 - 1], dtype=np.int32),
    "f16": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
    "i8": np.array([-128, 127], dtype=np.int8),
    "u64": np.array([2 ** 64 - 1], dtype=np.uint64),
    "scalar_f32": np.array(3.25, dtype=np.float32),
    "scalar_i64": np.array(-5, dtype=np.int64),
    "empty_f32": np.zeros((0,), dtype=np.float32),
    "empty_2d_f64": np.zeros((3, 0), dtype=np.float64),
    "prime_shape": np.random.default_rng(0).standard_normal((7, 11, 13)).astype(np.float32),
}


def test_round_trip_all_dtypes_and_shapes(tmp_path):
    path = tmp_path / "model.safetensors"
    ranvier.save(ROUND_TRIP_ARRAYS, path)
    loaded = ranvier.load(path)
    assert list(loaded) == list(ROUND_TRIP_ARRAYS)
    for name, expected in ROUND_TRIP_ARRAYS.items():
        got = loaded[name]
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert got.flags.c_contiguous and got.flags.writeable and got.flags.aligned


def test_loaded_arrays_are_independent_copies(tmp_path):
    path = tmp_path / "m.safetensors"
    ranvier.save({"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)}, str(path))
    loaded = ranvier.load(str(path))
    loaded["a"][0] = 5.0
    assert loaded["b"][0] == 1.0
    assert ranvier.load(path)["a"][0] == 1.0


def test_non_contiguous_and_big_endian_inputs(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    arrays = {
        "fortran": np.asfortranarray(base),
        "strided": base[::2, 1::2],
        "transposed": base.T,
        "big_endian": base.astype(">f4"),
        "numpy_scalar": np.float32(2.5),
    }
    path = tmp_path / "m.safetensors"
    ranvier.save(arrays, path)
    loaded = ranvier.load(path)
    for name, expected in arrays.items():
        np.testing.assert_array_equal(loaded[name], np.asarray(expected), err_msg=name)
    assert loaded["big_endian"].dtype == np.float32
    assert loaded["numpy_scalar"].shape == ()


def test_nested_dicts_are_flattened_with_dots(tmp_path):
    path = tmp_path / "nested.safetensors"
    w = np.ones((2, 3), np.float32)
    ranvier.save({"model": {"0": {"weight": w}, "0.bias": np.zeros(2, np.float32)},
                  "step": np.array(3)}, path)
    assert list(ranvier.load(path)) == ["model.0.weight", "model.0.bias", "step"]


def test_nested_names_that_collide_are_rejected(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match=r"flatten to the name 'a\.b'"):
        ranvier.save({"a": {"b": np.ones(1)}, "a.b": np.ones(1)}, path)
    assert not path.exists()


def test_metadata_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    metadata = {"format": "np", "epoch": "3", "note": "Ranvier \u00e9t\u00e9 \u2713"}
    ranvier.save({"w": np.ones(2, np.float32)}, path, metadata=metadata)
    arrays, got = ranvier.load(path, with_metadata=True)
    assert got == metadata
    assert ranvier.load_metadata(path) == metadata
    np.testing.assert_array_equal(arrays["w"], np.ones(2, np.float32))


def test_metadata_absent_is_empty_dict(tmp_path):
    path = tmp_path / "m.safetensors"
    ranvier.save({"w": np.ones(2)}, path)
    assert ranvier.load(path, with_metadata=True)[1] == {}
    assert ranvier.load_metadata(path) == {}
    header, _, _ = spec_parse(path.read_bytes())
    assert "__metadata__" not in header


def test_empty_state_dict(tmp_path):
    path = tmp_path / "empty.safetensors"
    ranvier.save({}, path)
    assert ranvier.load(path) == {}


# ------------------------------------------------------------------ byte-level format check


def test_bytes_follow_the_format_spec(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, -2], dtype=np.int64)
    c = np.array([True, False, True])
    path = tmp_path / "spec.safetensors"
    ranvier.save({"a": a, "b": b, "c": c}, path, metadata={"k": "v"})
    raw = path.read_bytes()

    header, data, length = spec_parse(raw)
    assert (8 + length) % 8 == 0
    header_text = raw[8:8 + length].decode("utf-8")
    assert header_text.rstrip(" ") == header_text.strip()  # padding is trailing spaces only
    assert header_text.lstrip().startswith("{")
    assert header["__metadata__"] == {"k": "v"}
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert header["b"] == {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}
    assert header["c"] == {"dtype": "BOOL", "shape": [3], "data_offsets": [40, 43]}
    # Data: little-endian, C order, nothing after the last tensor.
    expected = (struct.pack("<6f", *a.ravel()) + struct.pack("<2q", *b) + bytes([1, 0, 1]))
    assert data == expected


def test_dtype_names_match_the_spec(tmp_path):
    names = {np.bool_: "BOOL", np.uint8: "U8", np.int8: "I8", np.int16: "I16", np.uint16: "U16",
             np.int32: "I32", np.uint32: "U32", np.int64: "I64", np.uint64: "U64",
             np.float16: "F16", np.float32: "F32", np.float64: "F64"}
    path = tmp_path / "dtypes.safetensors"
    ranvier.save({np.dtype(t).name: np.zeros(2, t) for t in names}, path)
    header, _, _ = spec_parse(path.read_bytes())
    for t, spec_name in names.items():
        assert header[np.dtype(t).name]["dtype"] == spec_name


def test_reads_a_hand_written_file(tmp_path):
    data = struct.pack("<3d", 1.5, -2.0, 4.0) + struct.pack("<2i", 7, -9)
    header = {"x": {"dtype": "F64", "shape": [3], "data_offsets": [0, 24]},
              "y": {"dtype": "I32", "shape": [1, 2], "data_offsets": [24, 32]},
              "__metadata__": {"who": "test"}}
    path = write_bytes(tmp_path, spec_file_bytes(header, data), "hand.safetensors")
    arrays, metadata = ranvier.load(path, with_metadata=True)
    np.testing.assert_array_equal(arrays["x"], [1.5, -2.0, 4.0])
    np.testing.assert_array_equal(arrays["y"], [[7, -9]])
    assert arrays["y"].dtype == np.int32
    assert metadata == {"who": "test"}


def test_reads_unpadded_header_and_out_of_order_offsets(tmp_path):
    # The spec allows any header length; tensors may be listed in any order.
    data = struct.pack("<f", 1.0) + struct.pack("<f", 2.0)
    header = {"second": {"dtype": "F32", "shape": [], "data_offsets": [4, 8]},
              "first": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}
    path = write_bytes(tmp_path, spec_file_bytes(header, data, pad=False))
    arrays = ranvier.load(path)
    assert arrays["first"] == 1.0 and arrays["second"] == 2.0


# ---------------------------------------------------------------------- bad values on save


@pytest.mark.parametrize("value, match", [
    ([1.0, 2.0], r"value for 'bad' is a list"),
    (3.0, r"value for 'bad' is a float"),
    ("text", r"value for 'bad' is a str"),
    (np.array(["a", "b"]), r"'bad' has dtype <U1"),
    (np.array([1 + 2j]), r"'bad' has dtype complex128"),
    (np.array([object()]), r"'bad' has dtype object"),
])
def test_save_rejects_values_that_are_not_arrays(tmp_path, value, match):
    with pytest.raises(TypeError, match=match):
        ranvier.save({"ok": np.ones(1), "bad": value}, tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_bad_keys_and_metadata(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match=r"keys must be strings, got 3"):
        ranvier.save({3: np.ones(1)}, path)
    with pytest.raises(ValueError, match=r"'__metadata__' is reserved"):
        ranvier.save({"__metadata__": np.ones(1)}, path)
    with pytest.raises(TypeError, match=r"metadata must map str to str; got 'epoch': 3"):
        ranvier.save({"w": np.ones(1)}, path, metadata={"epoch": 3})
    with pytest.raises(TypeError, match=r"metadata must be a dict"):
        ranvier.save({"w": np.ones(1)}, path, metadata=["a"])
    with pytest.raises(TypeError, match=r"expected a dict of name -> array, got list"):
        ranvier.save([np.ones(1)], path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- atomicity


@pytest.fixture
def existing_file(tmp_path):
    path = tmp_path / "model.safetensors"
    ranvier.save({"w": np.arange(3, dtype=np.float32)}, path, metadata={"version": "1"})
    return path, path.read_bytes()


def assert_untouched(path, original):
    assert path.read_bytes() == original
    assert [p.name for p in path.parent.iterdir()] == [path.name], "temporary file left behind"


def test_unserialisable_value_leaves_existing_file_intact(existing_file):
    path, original = existing_file
    with pytest.raises(TypeError):
        ranvier.save({"w": np.ones(3), "bad": [1, 2]}, path)
    assert_untouched(path, original)


@pytest.mark.parametrize("failing", ["replace", "fsync", "chmod"])
def test_failure_during_write_leaves_existing_file_intact(existing_file, monkeypatch, failing):
    path, original = existing_file

    def fail(*args, **kwargs):
        raise OSError(f"simulated {failing} failure")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match=f"simulated {failing} failure"):
        ranvier.save({"w": np.zeros(100, np.float64)}, path)
    monkeypatch.undo()
    assert_untouched(path, original)
    assert ranvier.load_metadata(path) == {"version": "1"}


def test_failure_while_writing_data_removes_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "new.safetensors"
    calls = []
    real_fdopen = os.fdopen

    class ExplodingStream:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, data):
            calls.append(len(data))
            if len(calls) == 3:  # header length, header, then the first tensor: disk full
                raise OSError("No space left on device")
            return self.stream.write(data)

        def __getattr__(self, name):
            return getattr(self.stream, name)

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: ExplodingStream(real_fdopen(*a, **k)))
    with pytest.raises(OSError, match="No space left"):
        ranvier.save({"w": np.ones(10)}, path)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_content_and_keeps_mode(existing_file):
    path, _ = existing_file
    os.chmod(path, 0o640)
    ranvier.save({"v": np.ones(2, np.int64)}, path)
    assert list(ranvier.load(path)) == ["v"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_new_file_gets_umask_mode_not_tempfile_0600(tmp_path):
    path = tmp_path / "fresh.safetensors"
    ranvier.save({"v": np.ones(2)}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


# ------------------------------------------------------------------------- corrupted files


def good_parts():
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}
    data = struct.pack("<2f", 1.0, 2.0) + struct.pack("<q", 5)
    return header, data


def corrupt(kind):
    header, data = good_parts()
    if kind == "empty file":
        return b""
    if kind == "five bytes":
        return b"\x01\x02\x03\x04\x05"
    if kind == "header longer than file":
        return struct.pack("<Q", 1000) + b"{}"
    if kind == "huge header length":
        return struct.pack("<Q", 2 ** 64 - 1) + b"{}      "
    if kind == "not utf-8":
        text = b'{"\xff\xfe": 1}  '
        return struct.pack("<Q", len(text)) + text
    if kind == "not json":
        text = b'{"a": [1, 2'
        return struct.pack("<Q", len(text)) + text
    if kind == "json list":
        return spec_file_bytes([1, 2], b"")
    if kind == "duplicate key":
        text = (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}')
        return struct.pack("<Q", len(text)) + text + b"\0" * 4
    if kind == "unknown dtype":
        header["a"]["dtype"] = "F128"
    elif kind == "bfloat16":
        header["a"].update(dtype="BF16", shape=[4])
    elif kind == "dtype not a string":
        header["a"]["dtype"] = ["F32"]
    elif kind == "shape/offset mismatch":
        header["a"]["shape"] = [3]
    elif kind == "negative shape":
        header["a"]["shape"] = [-2]
    elif kind == "bool in shape":
        header["a"]["shape"] = [True, 2]
    elif kind == "missing field":
        del header["a"]["data_offsets"]
    elif kind == "extra field":
        header["a"]["strides"] = [1]
    elif kind == "entry not an object":
        header["a"] = [0, 8]
    elif kind == "offsets reversed":
        header["a"]["data_offsets"] = [8, 0]
    elif kind == "three offsets":
        header["a"]["data_offsets"] = [0, 4, 8]
    elif kind == "overlap":
        header["b"] = {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}
        data = data[:12]
    elif kind == "out of range":
        data = data[:12]
    elif kind == "gap":
        header["b"]["data_offsets"] = [12, 20]
        data = data + b"\0" * 4
    elif kind == "trailing garbage":
        data = data + b"garbage!"
    elif kind == "bad bool byte":
        header = {"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}}
        data = bytes([1, 2, 0])
    elif kind == "metadata not strings":
        header["__metadata__"] = {"epoch": 3}
    else:
        raise AssertionError(kind)
    return spec_file_bytes(header, data)


CORRUPTIONS = {
    "empty file": r"0 bytes, fewer than the 8-byte header length",
    "five bytes": r"5 bytes, fewer than the 8-byte header length",
    "header longer than file": r"header length is 1000 bytes but only 2 bytes follow",
    "huge header length": r"header length is 18446744073709551615 bytes",
    "not utf-8": r"header is not UTF-8",
    "not json": r"header is not valid JSON",
    "json list": r"header is a JSON list, not an object",
    "duplicate key": r"duplicate key 'a'",
    "unknown dtype": r"unknown dtype 'F128'",
    "bfloat16": r"dtype BF16, which NumPy cannot represent",
    "dtype not a string": r"unknown dtype \['F32'\]",
    "shape/offset mismatch": r"'a' \(F32, shape \(3,\)\) needs 12 bytes but data_offsets \[0, 8\] span 8",
    "negative shape": r"shape \[-2\]",
    "bool in shape": r"shape \[True, 2\]",
    "missing field": r"exactly 'dtype', 'shape' and 'data_offsets'",
    "extra field": r"exactly 'dtype', 'shape' and 'data_offsets'",
    "entry not an object": r"entry 'a' must be an object",
    "offsets reversed": r"data_offsets \[8, 0\]",
    "three offsets": r"data_offsets \[0, 4, 8\]",
    "overlap": r"tensors 'a' and 'b' overlap",
    "out of range": r"'b' has data_offsets \[8, 16\] beyond the 12-byte data buffer",
    "gap": r"4 unused bytes before tensor 'b'",
    "trailing garbage": r"8 bytes of trailing data after the last tensor",
    "bad bool byte": r"BOOL tensor 'm' holds bytes other than 0 and 1",
    "metadata not strings": r"'__metadata__' must be an object of strings",
}


def test_the_good_parts_are_good(tmp_path):
    header, data = good_parts()
    arrays = ranvier.load(write_bytes(tmp_path, spec_file_bytes(header, data)))
    np.testing.assert_array_equal(arrays["a"], [1.0, 2.0])
    np.testing.assert_array_equal(arrays["b"], [5])


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupted_file_gives_value_error_naming_the_file(tmp_path, kind):
    path = write_bytes(tmp_path, corrupt(kind), "corrupt_model.safetensors")
    pattern = r"corrupt_model\.safetensors: not a valid safetensors file: .*" + CORRUPTIONS[kind]
    with pytest.raises(ValueError, match=pattern):
        ranvier.load(path)
    if kind != "bad bool byte":  # only the data, not the header, is wrong there
        with pytest.raises(ValueError, match=pattern):
            ranvier.load_metadata(path)


def test_missing_file_gives_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        ranvier.load(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError):
        ranvier.load_metadata(tmp_path / "nope.safetensors")


# -------------------------------------------------------- interoperability with safetensors


def test_files_are_exchangeable_with_the_safetensors_package(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    arrays = {k: v for k, v in ROUND_TRIP_ARRAYS.items()}
    metadata = {"source": "ranvier"}

    ours = tmp_path / "ours.safetensors"
    ranvier.save(arrays, ours, metadata=metadata)
    theirs_read = st_numpy.load_file(str(ours))
    for name, expected in arrays.items():
        assert theirs_read[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(theirs_read[name], expected, err_msg=name)
    from safetensors import safe_open
    with safe_open(str(ours), framework="numpy") as f:
        assert f.metadata() == metadata

    theirs = tmp_path / "theirs.safetensors"
    st_numpy.save_file(arrays, str(theirs), metadata={"source": "safetensors"})
    ours_read, ours_metadata = ranvier.load(theirs, with_metadata=True)
    assert set(ours_read) == set(arrays)
    assert ours_metadata == {"source": "safetensors"}
    for name, expected in arrays.items():
        assert ours_read[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(ours_read[name], expected, err_msg=name)
