"""ranvier.data loading: Dataset/TensorDataset/DataLoader, train_val_test_split, transforms,
protein encoding."""

import json

import numpy as np
import pytest

import ranvier
from ranvier.data import DataLoader, Dataset, TensorDataset, train_val_test_split


def make_xy(n=23, features=3):
    x = np.arange(n * features, dtype=np.float32).reshape(n, features)
    y = np.arange(n, dtype=np.int64)
    return x, y


class ListDataset(Dataset):
    """A generic (non-TensorDataset) dataset: samples built one by one in Python."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


# ------------------------------------------------------------------------- TensorDataset

def test_tensor_dataset_items_and_inputs():
    x, y = make_xy()
    ds = TensorDataset(x, ranvier.tensor(y), y.tolist())
    assert len(ds) == 23
    xi, yi, zi = ds[5]
    np.testing.assert_array_equal(xi, x[5])
    assert yi == 5 and zi == 5
    assert all(isinstance(a, np.ndarray) for a in ds.arrays)
    assert "(23, 3)" in repr(ds)


def test_tensor_dataset_errors():
    with pytest.raises(ValueError, match="TensorDataset: needs at least one array"):
        TensorDataset()
    with pytest.raises(ValueError, match=r"same length along the first dimension, got shapes "
                                         r"\(4, 2\), \(5,\)"):
        TensorDataset(np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(ValueError, match=r"array 1 is a scalar"):
        TensorDataset(np.zeros(3), np.float64(1.0))


def test_base_dataset_must_be_subclassed():
    with pytest.raises(NotImplementedError, match="Dataset must define __len__"):
        len(Dataset())


# ---------------------------------------------------------------------------- DataLoader

@pytest.mark.parametrize("n, batch_size, drop_last", [(23, 5, False), (23, 5, True),
                                                      (20, 5, False), (20, 5, True),
                                                      (1, 4, False), (7, 1, False),
                                                      (3, 7, True), (0, 3, False)])
def test_batches_cover_the_data_in_order(n, batch_size, drop_last):
    x, y = make_xy(n)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    expected_batches = n // batch_size if drop_last else -(-n // batch_size)
    assert len(loader) == len(batches) == expected_batches
    kept = expected_batches * batch_size if drop_last else n
    if batches:
        assert all(len(b) == 2 for b in batches)
        assert all(b[0].shape[0] == batch_size for b in batches[:-1])
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[:kept])
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x[:kept])
        assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64


def test_generic_path_matches_fast_path():
    x, y = make_xy(17)
    fast = list(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=3))
    slow = list(DataLoader(ListDataset(x, y), batch_size=4, shuffle=True, seed=3))
    assert len(fast) == len(slow) == 5
    for (fx, fy), (sx, sy) in zip(fast, slow):
        np.testing.assert_array_equal(fx, sx)
        np.testing.assert_array_equal(fy, sy)


def test_single_array_samples_give_one_tuples():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full(2, i * i, dtype=np.float64)

    (batch,), (last,) = DataLoader(Squares(), batch_size=3)
    np.testing.assert_array_equal(batch[:, 0], [0, 1, 4])
    assert last.shape == (2, 2)


def test_transform_is_applied_to_every_batch_after_shuffling():
    x, y = make_xy(11)
    seen = []

    def negate_inputs(xb, yb):
        seen.append(len(xb))
        return -xb, yb

    plain = list(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=5))
    transformed = list(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=5,
                                  transform=negate_inputs))
    assert seen == [4, 4, 3]
    for (px, py), (tx, ty) in zip(plain, transformed):
        np.testing.assert_array_equal(tx, -px)
        np.testing.assert_array_equal(ty, py)


def test_transform_errors_name_the_loader():
    x, y = make_xy(4)
    with pytest.raises(TypeError, match="DataLoader: transform must be callable"):
        DataLoader(TensorDataset(x, y), transform="flip")
    with pytest.raises(TypeError, match=r"DataLoader: transform must return a tuple of 2 fields.*ndarray"):
        list(DataLoader(TensorDataset(x, y), batch_size=2, transform=lambda xb, yb: xb))
    with pytest.raises(TypeError, match="tuple of 2 fields .*a tuple of 3"):
        list(DataLoader(TensorDataset(x, y), batch_size=2, transform=lambda xb, yb: (xb, yb, yb)))


def test_batches_are_copies():
    x, y = make_xy(6)
    original = x.copy()
    for xb, _ in DataLoader(TensorDataset(x, y), batch_size=4):
        xb[:] = -1
    np.testing.assert_array_equal(x, original)


def test_shuffle_is_a_permutation_reshuffled_every_epoch():
    x, y = make_xy(50)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=0)
    epochs = [np.concatenate([yb for _, yb in loader]) for _ in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), y)
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    # rows stay aligned across fields
    for xb, yb in loader:
        np.testing.assert_array_equal(xb, x[yb])


def test_shuffle_reproducible_with_seed_and_manual_seed():
    x, y = make_xy(40)

    def two_epochs(**kwargs):
        loader = DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True, **kwargs)
        return [np.concatenate([yb for _, yb in loader]) for _ in range(2)]

    a, b = two_epochs(seed=11), two_epochs(seed=11)
    np.testing.assert_array_equal(np.array(a), np.array(b))
    assert not np.array_equal(two_epochs(seed=12)[0], a[0])
    ranvier.manual_seed(5)
    c = two_epochs()
    ranvier.manual_seed(5)
    d = two_epochs()
    np.testing.assert_array_equal(np.array(c), np.array(d))
    ranvier.manual_seed(6)
    assert not np.array_equal(two_epochs()[0], c[0])


def test_no_shuffle_leaves_default_generator_alone():
    ranvier.manual_seed(1)
    before = ranvier.random.get_rng_state()
    DataLoader(TensorDataset(*make_xy()), batch_size=2)
    DataLoader(TensorDataset(*make_xy()), batch_size=2, shuffle=True, seed=4)
    assert ranvier.random.get_rng_state() == before


def epoch_orders(loader, epochs):
    return [np.concatenate([yb for _, yb in loader]).tolist() for _ in range(epochs)]


def test_resume_between_epochs_is_exact():
    x, y = make_xy(31)
    reference = epoch_orders(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True,
                                        seed=9), 5)
    first = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=9)
    assert epoch_orders(first, 2) == reference[:2]
    state = json.loads(json.dumps(first.state_dict()))          # survives JSON
    assert state["epochs_completed"] == 2 and state["batches_yielded"] == 0
    resumed = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=12345)
    resumed.load_state_dict(state)
    assert epoch_orders(resumed, 3) == reference[2:]
    assert resumed.state_dict()["epochs_completed"] == 5


def test_resume_mid_epoch_is_exact():
    x, y = make_xy(31)
    reference = epoch_orders(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True,
                                        seed=2), 3)
    first = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=2)
    epoch_orders(first, 1)
    iterator = iter(first)
    seen = [next(iterator)[1] for _ in range(3)]
    state = first.state_dict()
    assert state["batches_yielded"] == 3 and state["epochs_completed"] == 1
    resumed = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=0)
    resumed.load_state_dict(state)
    rest = [yb for _, yb in resumed]
    assert len(rest) == len(resumed) - 3
    assert np.concatenate(seen + rest).tolist() == reference[1]
    assert epoch_orders(resumed, 1) == [reference[2]]


def test_resume_without_shuffle_mid_epoch():
    x, y = make_xy(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    assert state == {"epochs_completed": 0, "generator": None, "batches_yielded": 1}
    resumed = DataLoader(TensorDataset(x, y), batch_size=3)
    resumed.load_state_dict(state)
    assert np.concatenate([yb for _, yb in resumed]).tolist() == list(range(3, 10))


def test_loader_errors():
    ds = TensorDataset(*make_xy())
    with pytest.raises(ValueError, match="DataLoader: batch_size must be >= 1, got 0"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="DataLoader: batch_size must be an int"):
        DataLoader(ds, batch_size=2.0)
    with pytest.raises(ValueError, match="DataLoader: seed must be a non-negative int"):
        DataLoader(ds, shuffle=True, seed=-1)
    with pytest.raises(TypeError, match="DataLoader: dataset must define __len__"):
        DataLoader(object())
    shuffled = DataLoader(ds, shuffle=True, seed=0)
    with pytest.raises(ValueError, match="saved from a loader with shuffle=False"):
        shuffled.load_state_dict(DataLoader(ds).state_dict())
    with pytest.raises(ValueError, match="not a DataLoader state"):
        shuffled.load_state_dict({"epochs": 1})
    with pytest.raises(ValueError, match="batches_yielded=99 is outside"):
        DataLoader(ds).load_state_dict({"epochs_completed": 0, "generator": None,
                                        "batches_yielded": 99})

    class Ragged(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros(i + 1), 0

    with pytest.raises(ValueError, match="cannot stack field 0 of the samples: shapes differ"):
        list(DataLoader(Ragged(), batch_size=2))


# ------------------------------------------------------------------------------- splits

def test_split_sizes_disjoint_and_aligned():
    x, y = make_xy(100)
    (xtr, ytr), (xva, yva), (xte, yte) = train_val_test_split(x, y, val_size=0.15,
                                                              test_size=0.2, seed=0)
    assert (len(ytr), len(yva), len(yte)) == (65, 15, 20)
    np.testing.assert_array_equal(np.sort(np.concatenate([ytr, yva, yte])), y)
    for xs, ys in ((xtr, ytr), (xva, yva), (xte, yte)):
        np.testing.assert_array_equal(xs, x[ys])
    again = train_val_test_split(x, y, val_size=0.15, test_size=0.2, seed=0)
    np.testing.assert_array_equal(again[1][1], yva)
    counts = train_val_test_split(y, val_size=10, test_size=0, seed=1)
    assert [len(part[0]) for part in counts] == [90, 10, 0]


def test_split_stratified_keeps_proportions():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["a", "b", "c"]), [60, 30, 10])
    rng.shuffle(labels)
    ids = np.arange(100)
    (itr, ltr), (iva, lva), (ite, lte) = train_val_test_split(ids, labels, val_size=0.2,
                                                              test_size=0.1, stratify=labels,
                                                              seed=3)
    for part, expected in ((lva, {"a": 12, "b": 6, "c": 2}), (lte, {"a": 6, "b": 3, "c": 1}),
                           (ltr, {"a": 42, "b": 21, "c": 7})):
        values, counts = np.unique(part, return_counts=True)
        assert dict(zip(values.tolist(), counts.tolist())) == expected
    np.testing.assert_array_equal(labels[ite], lte)


def test_split_stratified_rare_class_appears_everywhere():
    labels = np.array([0] * 40 + [1] * 3)
    parts = train_val_test_split(labels, stratify=labels, seed=0)
    for (part,) in parts:
        assert set(part.tolist()) == {0, 1}


def test_split_errors():
    x = np.zeros(10)
    with pytest.raises(ValueError, match="train_val_test_split: val_size=0.5 and "
                                         "test_size=0.5 take 5 \\+ 5 of 10 samples"):
        train_val_test_split(x, val_size=0.5, test_size=0.5)
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\), got 1.5"):
        train_val_test_split(x, val_size=1.5)
    with pytest.raises(ValueError, match="val_size must be >= 0"):
        train_val_test_split(x, val_size=-2)
    with pytest.raises(ValueError, match="same length along the first dimension"):
        train_val_test_split(x, np.zeros(9))
    with pytest.raises(ValueError, match=r"stratify must have shape \(10,\)"):
        train_val_test_split(x, stratify=np.zeros(9))
    with pytest.raises(ValueError, match=r"at least 3 members of every class .* class\(es\) "
                                         r"1 \(2\)"):
        train_val_test_split(x, stratify=np.array([0] * 8 + [1] * 2))
    with pytest.raises(ValueError, match="needs at least one array"):
        train_val_test_split()


# ---------------------------------------------------------------------------- Standardize

from ranvier.data import (AMINO_ACIDS, Standardize, log1p, one_hot_protein,  # noqa: E402
                          random_crop, random_horizontal_flip, random_rotate90,
                          random_vertical_flip)


def test_standardize_uses_training_statistics_only(rng):
    train = rng.normal(loc=[1.0, -5.0, 100.0], scale=[2.0, 0.1, 30.0], size=(200, 3))
    val = rng.normal(loc=3.0, size=(50, 3))
    scaler = Standardize().fit(train)
    np.testing.assert_allclose(scaler.mean, train.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.std, train.std(axis=0), rtol=1e-12)
    z = scaler.transform(train)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-12)
    # validation data is scaled with the training statistics, not its own
    np.testing.assert_allclose(scaler.transform(val), (val - train.mean(0)) / train.std(0),
                               rtol=1e-12)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(val)), val, rtol=1e-12)
    np.testing.assert_allclose(Standardize().fit_transform(train), z)
    # population std (ddof=0), as scikit-learn's StandardScaler
    direct = [(train[:, j] - sum(train[:, j]) / 200)
              / np.sqrt(sum((v - sum(train[:, j]) / 200) ** 2 for v in train[:, j]) / 200)
              for j in range(3)]
    np.testing.assert_allclose(z, np.column_stack(direct), rtol=1e-10)


def test_standardize_constant_features_dtype_and_state(rng):
    x = np.column_stack([rng.normal(size=20), np.full(20, 0.1), np.zeros(20)]).astype(np.float32)
    scaler = Standardize().fit(x)
    z = scaler.transform(x)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_array_equal(z[:, 1:], 0)
    np.testing.assert_array_equal(scaler.std[1:], 0)
    np.testing.assert_allclose(scaler.inverse_transform(z), x, rtol=1e-6)
    assert Standardize().fit(np.arange(12).reshape(4, 3)).transform(
        np.arange(12).reshape(4, 3)).dtype == np.float64
    state = json.loads(json.dumps({k: v.tolist() for k, v in scaler.state_dict().items()}))
    restored = Standardize().load_state_dict(state)
    np.testing.assert_array_equal(restored.transform(x), z)
    images = rng.normal(size=(6, 2, 3, 3))            # per-pixel statistics work too
    assert Standardize().fit(images).transform(images).shape == (6, 2, 3, 3)


def test_standardize_errors():
    with pytest.raises(RuntimeError, match="Standardize.transform: the Standardize is not "
                                           "fitted; call fit"):
        Standardize().transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="Standardize.fit: x contains NaN"):
        Standardize().fit(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"needs at least one sample .* got shape \(0, 3\)"):
        Standardize().fit(np.zeros((0, 3)))
    scaler = Standardize().fit(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"per-sample shape \(5,\), but the Standardize was "
                                         r"fitted on \(4,\)"):
        scaler.transform(np.zeros((2, 5)))
    with pytest.raises(TypeError, match="Standardize.fit: expected numbers"):
        Standardize().fit(np.array([["a"]]))
    with pytest.raises(ValueError, match="std non-negative"):
        Standardize().load_state_dict({"mean": [0.0], "std": [-1.0]})
    with pytest.raises(ValueError, match="expected"):
        Standardize().load_state_dict({"mean": [0.0]})


def test_log1p():
    counts = np.array([[0, 1, 9], [99, 3, 0]])
    out = log1p(counts)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, np.log(1.0 + counts), rtol=1e-15)
    assert log1p(counts.astype(np.float32)).dtype == np.float32
    assert log1p(counts, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"log1p: counts must be non-negative, got 2 negative "
                                         r"value\(s\) \(smallest -3"):
        log1p(np.array([1, -1, -3]))
    with pytest.raises(ValueError, match=r"log1p: x contains 1 NaN"):
        log1p(np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="log1p: expected numbers"):
        log1p(np.array(["1"]))


# ------------------------------------------------------------------------ image transforms

def images(rng, n=16, c=2, h=5, w=5):
    return rng.normal(size=(n, c, h, w)).astype(np.float32)


def test_flips_are_per_patch_mirror_images(rng):
    x = images(rng)
    original = x.copy()
    for flip, axis in ((random_horizontal_flip, -1), (random_vertical_flip, -2)):
        out = flip(x, np.random.default_rng(0))
        np.testing.assert_array_equal(x, original)            # input untouched
        flipped = [not np.array_equal(o, p) for o, p in zip(out, x)]
        for o, p, was_flipped in zip(out, x, flipped):
            np.testing.assert_array_equal(o, np.flip(p, axis=axis) if was_flipped else p)
        assert 0 < sum(flipped) < len(x)                        # p = 0.5: some of each
        again = flip(x, np.random.default_rng(0))
        np.testing.assert_array_equal(out, again)               # same generator, same result
        np.testing.assert_array_equal(flip(x, np.random.default_rng(1), p=0.0), x)
        np.testing.assert_array_equal(flip(x, np.random.default_rng(1), p=1.0),
                                      np.flip(x, axis=axis))
        single = flip(x[0], np.random.default_rng(3), p=1.0)
        np.testing.assert_array_equal(single, np.flip(x[0], axis=axis))


def test_rotations_are_exact_quarter_turns(rng):
    x = images(rng, n=40)
    out = random_rotate90(x, np.random.default_rng(0))
    seen = set()
    for o, p in zip(out, x):
        matches = [k for k in range(4) if np.array_equal(o, np.rot90(p, k, axes=(-2, -1)))]
        assert matches, "every output patch is a quarter-turn of its input"
        seen.add(matches[0])
        np.testing.assert_array_equal(np.sort(o, axis=None), np.sort(p, axis=None))
    assert seen == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="random_rotate90: 90-degree rotations need square "
                                         "patches .* H=5, W=4"):
        random_rotate90(images(rng, h=5, w=4), np.random.default_rng(0))


def test_random_crop_windows_in_bounds(rng):
    n, h, w = 30, 7, 9
    x = np.arange(n * 2 * h * w, dtype=np.float64).reshape(n, 2, h, w)
    out = random_crop(x, (3, 4), np.random.default_rng(0))
    assert out.shape == (n, 2, 3, 4)
    tops, lefts = set(), set()
    for o, p in zip(out, x):
        # the window's top-left value locates it; it must be a contiguous window of p
        top, left = np.argwhere(p[0] == o[0, 0, 0])[0]
        assert 0 <= top <= h - 3 and 0 <= left <= w - 4
        np.testing.assert_array_equal(o, p[:, top:top + 3, left:left + 4])
        tops.add(top)
        lefts.add(left)
    assert len(tops) > 1 and len(lefts) > 1
    np.testing.assert_array_equal(random_crop(x, (h, w), np.random.default_rng(0)), x)
    assert random_crop(x[0], 2, np.random.default_rng(0)).shape == (2, 2, 2)
    with pytest.raises(ValueError, match=r"crop size \(8, 2\) does not fit patches of "
                                         r"\(H, W\) = \(7, 9\)"):
        random_crop(x, (8, 2), np.random.default_rng(0))
    with pytest.raises(TypeError, match="size must be an int or a pair of ints"):
        random_crop(x, 2.5, np.random.default_rng(0))


def test_image_transform_errors_and_default_generator(rng):
    with pytest.raises(ValueError, match=r"random_horizontal_flip: expected images of shape "
                                         r"\(N, C, H, W\) or \(C, H, W\), got \(4, 4\)"):
        random_horizontal_flip(np.zeros((4, 4)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="p must be a probability"):
        random_vertical_flip(images(rng), np.random.default_rng(0), p=1.5)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        random_rotate90(images(rng), rng=0)
    x = images(rng)
    ranvier.manual_seed(4)
    a = random_rotate90(x)
    ranvier.manual_seed(4)
    np.testing.assert_array_equal(random_rotate90(x), a)


# ------------------------------------------------------------------------------- proteins

def test_one_hot_protein_matches_a_direct_loop():
    sequences = ["MKVLAAGIW", "acdefghiklmnpqrstvwy", "MXBZ", "", "juo"]
    x, lengths = one_hot_protein(sequences, return_lengths=True)
    assert x.shape == (5, 21, 20) and x.dtype == np.float32
    assert lengths.tolist() == [9, 20, 4, 0, 3]
    expected = np.zeros((5, 21, 20))
    for i, s in enumerate(sequences):
        for j, char in enumerate(s.upper()):
            expected[i, AMINO_ACIDS.index(char) if char in AMINO_ACIDS else 20, j] = 1.0
    np.testing.assert_array_equal(x, expected)
    cut, cut_lengths = one_hot_protein(sequences, length=4, return_lengths=True,
                                       dtype=np.float64)
    assert cut.dtype == np.float64 and cut_lengths.tolist() == [4, 4, 4, 0, 3]
    np.testing.assert_array_equal(cut, expected[:, :, :4])
    zeros = one_hot_protein("MX", unknown="zeros")
    np.testing.assert_array_equal(zeros[0, :, 1], 0)
    assert one_hot_protein([("p1", "MK")]).shape == (1, 21, 2)


def test_one_hot_protein_errors():
    with pytest.raises(ValueError, match=r"one_hot_protein: sequence 1, position 2: character "
                                         r"'\*' is a stop; strip it"):
        one_hot_protein(["MK", "MK*"])
    with pytest.raises(ValueError, match=r"sequence 0, position 1: character '-' is not an "
                                         r"amino-acid code"):
        one_hot_protein("M-K")
    with pytest.raises(ValueError, match=r"character 'X' is an unknown/ambiguous amino-acid "
                                         r"code and unknown='error'"):
        one_hot_protein("MX", unknown="error")
    with pytest.raises(ValueError, match="unknown must be one of 'channel', 'zeros', 'error'"):
        one_hot_protein("M", unknown="spread")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        one_hot_protein("M", dtype=np.int32)
    with pytest.raises(ValueError, match="length must be >= 0"):
        one_hot_protein("M", length=-1)


# ------------------------------------------------------------------------------ CuPy arrays

@pytest.fixture
def cupy():
    module = pytest.importorskip("cupy")
    if not ranvier.cuda.is_available():
        pytest.skip(f"no usable GPU: {ranvier.cuda.unavailable_reason()}")
    return module


def test_cupy_stays_cupy(cupy):
    x, y = make_xy(11)
    loader = DataLoader(TensorDataset(cupy.asarray(x), cupy.asarray(y)), batch_size=4,
                        shuffle=True, seed=0)
    cpu = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=0)
    for (xg, yg), (xc, yc) in zip(loader, cpu):
        assert isinstance(xg, cupy.ndarray) and isinstance(yg, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(xg), xc)
    parts = train_val_test_split(cupy.asarray(x), stratify=y % 2, seed=0)
    assert all(isinstance(part[0], cupy.ndarray) for part in parts)
    patches = np.random.default_rng(0).normal(size=(5, 1, 4, 4))
    for transform in (lambda a, g: random_rotate90(a, g), lambda a, g: random_crop(a, 3, g),
                      lambda a, g: random_horizontal_flip(a, g)):
        gpu = transform(cupy.asarray(patches), np.random.default_rng(1))
        assert isinstance(gpu, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(gpu),
                                      transform(patches, np.random.default_rng(1)))
    scaler = Standardize().fit(cupy.asarray(x))
    np.testing.assert_allclose(cupy.asnumpy(scaler.transform(cupy.asarray(x))),
                               Standardize().fit(x).transform(x), rtol=1e-6)
