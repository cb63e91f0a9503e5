"""ranvier.data.sequences: FASTA reading, one-hot DNA, reverse complement.

Expected values are written from the documented definitions (IUPAC table, padding rules), by
hand, never produced by the code under test.
"""

import gzip
import io
import re

import numpy as np
import pytest

from ranvier.data import (IUPAC_DNA, iter_fasta, one_hot_dna, read_fasta, reverse_complement,
                          reverse_complement_one_hot)

# The IUPAC nucleotide code as written in the standard (NC-IUB 1984), channel weights in ACGT.
IUPAC_EXPECTED = {
    "A": [1, 0, 0, 0], "C": [0, 1, 0, 0], "G": [0, 0, 1, 0], "T": [0, 0, 0, 1],
    "U": [0, 0, 0, 1],
    "R": [1 / 2, 0, 1 / 2, 0], "Y": [0, 1 / 2, 0, 1 / 2], "S": [0, 1 / 2, 1 / 2, 0],
    "W": [1 / 2, 0, 0, 1 / 2], "K": [0, 0, 1 / 2, 1 / 2], "M": [1 / 2, 1 / 2, 0, 0],
    "B": [0, 1 / 3, 1 / 3, 1 / 3], "D": [1 / 3, 0, 1 / 3, 1 / 3],
    "H": [1 / 3, 1 / 3, 0, 1 / 3], "V": [1 / 3, 1 / 3, 1 / 3, 0],
    "N": [1 / 4, 1 / 4, 1 / 4, 1 / 4],
}
AMBIGUOUS = "RYSWKMBDHVN"


def write(path, text, mode="w", newline=None):
    if mode == "wb":
        path.write_bytes(text)
    else:
        with open(path, "w", newline=newline) as f:
            f.write(text)
    return path


# ------------------------------------------------------------------------------- read_fasta

def test_read_fasta_multiline_blank_lines_and_names(tmp_path):
    path = write(tmp_path / "a.fa",
                 ">seq1 first record\nACGT\nacgt\n\n>seq2\n\nNNRY\n>empty\n>seq3\t tab\nA C\tG\n")
    records = read_fasta(path)
    assert [tuple(r) for r in records] == [
        ("seq1 first record", "ACGTacgt"), ("seq2", "NNRY"), ("empty", ""),
        ("seq3\t tab", "ACG")]
    name, sequence = records[0]          # records unpack as (name, sequence)
    assert (name, sequence) == (records[0].name, records[0].sequence)


def test_read_fasta_windows_and_old_mac_line_endings(tmp_path):
    crlf = write(tmp_path / "crlf.fa", b">a\r\nAC\r\nGT\r\n>b\r\nTT\r\n", mode="wb")
    cr = write(tmp_path / "cr.fa", b">a\rAC\rGT\r>b\rTT\r", mode="wb")
    expected = [("a", "ACGT"), ("b", "TT")]
    assert [tuple(r) for r in read_fasta(crlf)] == expected
    assert [tuple(r) for r in read_fasta(cr)] == expected


def test_read_fasta_gzip_by_magic_bytes_not_name(tmp_path):
    text = b">x\nACGTN\nAC\n>y\nGG\n"
    # A gzip file without the .gz suffix, and a plain file with one: content decides.
    hidden = write(tmp_path / "peaks.fa", gzip.compress(text), mode="wb")
    misnamed = write(tmp_path / "plain.fa.gz", text, mode="wb")
    expected = [("x", "ACGTNAC"), ("y", "GG")]
    assert [tuple(r) for r in read_fasta(hidden)] == expected
    assert [tuple(r) for r in read_fasta(str(misnamed))] == expected


def test_read_fasta_file_objects_text_binary_gzip():
    text = ">x\nAC\nGT\n"
    assert read_fasta(io.StringIO(text)) == [("x", "ACGT")]
    assert read_fasta(io.BytesIO(text.encode())) == [("x", "ACGT")]
    assert read_fasta(io.BytesIO(gzip.compress(text.encode()))) == [("x", "ACGT")]


def test_read_fasta_leaves_a_caller_stream_open(tmp_path):
    path = write(tmp_path / "a.fa", ">x\nAC\n")
    with open(path, "rb") as stream:
        assert read_fasta(stream) == [("x", "AC")]
        assert not stream.closed


def test_iter_fasta_is_lazy(tmp_path):
    path = write(tmp_path / "a.fa", ">a\nAC\n>b\nGT\n>c\nX\n")  # the error is in record c
    records = iter_fasta(path)
    assert next(records) == ("a", "AC")
    assert next(records) == ("b", "GT")
    with pytest.raises(ValueError, match="line 6"):
        next(records)


def test_read_fasta_empty_file_gives_no_records(tmp_path):
    assert read_fasta(write(tmp_path / "empty.fa", "")) == []
    assert read_fasta(write(tmp_path / "blank.fa", "\n\n  \n")) == []


def test_read_fasta_sequence_before_header(tmp_path):
    path = write(tmp_path / "nohead.fa", "\nACGT\n>a\nAC\n")
    with pytest.raises(ValueError, match=r"nohead\.fa, line 2: sequence data before the first"):
        read_fasta(path)


@pytest.mark.parametrize("header", [">", ">   ", ">\t"])
def test_read_fasta_empty_name(tmp_path, header):
    path = write(tmp_path / "noname.fa", f">ok\nAC\n{header}\nGT\n")
    with pytest.raises(ValueError, match=r"noname\.fa, line 3: empty record name"):
        read_fasta(path)


@pytest.mark.parametrize("line, bad, column", [
    ("ACGX", "X", 4), ("AC-GT", "-", 3), ("AC.G", ".", 3), ("A1", "1", 2), ("ACé", "é", 3),
    ("  AC X", "X", 6)])   # columns count from the start of the line as written
def test_read_fasta_character_outside_dna_alphabet(tmp_path, line, bad, column):
    path = write(tmp_path / "bad.fa", f">a\nACGT\n{line}\n")
    with pytest.raises(ValueError, match=rf"bad\.fa, line 3, column {column}: character "
                                         rf"{re.escape(repr(bad))} is not in the dna alphabet"):
        read_fasta(path)


def test_read_fasta_undecodable_bytes_are_reported_with_their_line(tmp_path):
    path = write(tmp_path / "latin.fa", b">a\nAC\xff\n", mode="wb")
    with pytest.raises(ValueError, match=r"line 2, column 3"):
        read_fasta(path)


def test_read_fasta_protein_and_unchecked_alphabets(tmp_path):
    path = write(tmp_path / "p.fa", ">p\nMKVLE*\n")
    assert read_fasta(path, alphabet="protein") == [("p", "MKVLE*")]
    with pytest.raises(ValueError, match="not in the dna alphabet"):
        read_fasta(path)                          # E and * are not nucleotides
    path = write(tmp_path / "gap.fa", ">g\nAC--GT\n")
    assert read_fasta(path, alphabet=None) == [("g", "AC--GT")]
    with pytest.raises(ValueError, match="alphabet must be 'dna', 'protein' or None"):
        read_fasta(path, alphabet="rna")


def test_read_fasta_bad_source_type():
    with pytest.raises(TypeError, match="expected a path or a file object, got int"):
        read_fasta(3)


def test_read_fasta_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_fasta(tmp_path / "nope.fa")


# ------------------------------------------------------------------------------ one_hot_dna

def column(code):
    return np.array(IUPAC_EXPECTED[code], dtype=np.float64)


def test_one_hot_layout_channels_first_acgt():
    x = one_hot_dna(["ACGT", "TTGA"])
    assert x.shape == (2, 4, 4) and x.dtype == np.float32 and x.flags.c_contiguous
    expected0 = np.eye(4, dtype=np.float32)                   # A C G T on the diagonal
    expected1 = np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]], np.float32)
    np.testing.assert_array_equal(x[0], expected0)
    np.testing.assert_array_equal(x[1], expected1)


@pytest.mark.parametrize("code", sorted(IUPAC_EXPECTED))
def test_one_hot_each_iupac_code_spread(code):
    x = one_hot_dna([code, code.lower()], dtype=np.float64)
    np.testing.assert_allclose(x[0, :, 0], column(code), rtol=0, atol=1e-15)
    np.testing.assert_allclose(x[1, :, 0], column(code), rtol=0, atol=1e-15)
    assert x[0, :, 0].sum() == pytest.approx(1.0)


def test_iupac_table_matches_the_standard():
    for code, weights in IUPAC_EXPECTED.items():
        assert set(IUPAC_DNA[code]) == {b for b, w in zip("ACGT", weights) if w > 0}


@pytest.mark.parametrize("code", list(AMBIGUOUS))
def test_one_hot_uniform_and_zeros_policies(code):
    uniform = one_hot_dna("A" + code, unknown="uniform")
    zeros = one_hot_dna("A" + code, unknown="zeros")
    np.testing.assert_array_equal(uniform[0, :, 1], np.full(4, 0.25, np.float32))
    np.testing.assert_array_equal(zeros[0, :, 1], np.zeros(4, np.float32))
    # The unambiguous base is unaffected by the policy.
    np.testing.assert_array_equal(uniform[0, :, 0], [1, 0, 0, 0])
    np.testing.assert_array_equal(zeros[0, :, 0], [1, 0, 0, 0])


@pytest.mark.parametrize("code", list(AMBIGUOUS) + ["n", "r"])
def test_one_hot_error_policy_names_sequence_and_position(code):
    with pytest.raises(ValueError, match=rf"sequence 1, position 2: character '{code}' is an "
                                         rf"IUPAC ambiguity code and unknown='error'"):
        one_hot_dna(["ACGT", "AC" + code + "T"], unknown="error")
    assert one_hot_dna(["ACGTU"], unknown="error").shape == (1, 4, 5)   # plain bases pass


def test_one_hot_rna_u_is_t_and_soft_masked_lowercase():
    np.testing.assert_array_equal(one_hot_dna("ACGU"), one_hot_dna("ACGT"))
    np.testing.assert_array_equal(one_hot_dna("acgu"), one_hot_dna("ACGT"))


@pytest.mark.parametrize("bad, position", [("X", 2), ("-", 1), (".", 3), ("1", 0), ("é", 2),
                                           ("\x00", 1), (" ", 2), ("ж", 0)])
def test_one_hot_non_iupac_character(bad, position):
    sequence = "ACGT"[:position] + bad + "ACGT"[position:]
    for unknown in ("spread", "error"):
        with pytest.raises(ValueError, match=rf"sequence 2, position {position}: character "
                                             rf"{re.escape(repr(bad))} is not an IUPAC "
                                             rf"nucleotide code"):
            one_hot_dna(["A", "CC", sequence], unknown=unknown)


def test_one_hot_padding_to_longest_with_zero_columns_at_the_end():
    x, lengths = one_hot_dna(["ACG", "T", ""], return_lengths=True)
    assert x.shape == (3, 4, 3)
    np.testing.assert_array_equal(lengths, [3, 1, 0])
    assert lengths.dtype == np.int64
    np.testing.assert_array_equal(x[1, :, 0], [0, 0, 0, 1])
    np.testing.assert_array_equal(x[1, :, 1:], np.zeros((4, 2)))
    np.testing.assert_array_equal(x[2], np.zeros((4, 3)))


def test_one_hot_fixed_length_pads_and_cuts():
    x, lengths = one_hot_dna(["ACGTAC", "GG"], length=4, return_lengths=True)
    assert x.shape == (2, 4, 4)
    np.testing.assert_array_equal(lengths, [4, 2])
    np.testing.assert_array_equal(x[0], np.eye(4))                       # ACGT, the first 4
    np.testing.assert_array_equal(x[1, :, :2], [[0, 0], [0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(x[1, :, 2:], np.zeros((4, 2)))
    assert one_hot_dna(["ACGT"], length=0).shape == (1, 4, 0)


def test_one_hot_padding_differs_from_n():
    x = one_hot_dna(["N", "NN"])
    np.testing.assert_array_equal(x[0, :, 1], np.zeros(4))               # padding
    np.testing.assert_array_equal(x[1, :, 1], np.full(4, 0.25))          # an N


def test_one_hot_other_channel_order_and_dtype():
    x = one_hot_dna(["ACGTR"], alphabet="TGCA", dtype=np.float64)
    assert x.dtype == np.float64
    expected = np.array([[0, 0, 0, 1, 0], [0, 0, 1, 0, 0.5], [0, 1, 0, 0, 0],
                         [1, 0, 0, 0, 0.5]])
    np.testing.assert_array_equal(x[0], expected)
    np.testing.assert_array_equal(one_hot_dna("ACGU", alphabet="ACGU"), one_hot_dna("ACGT"))


def test_one_hot_accepts_records_and_a_single_string(tmp_path):
    path = write(tmp_path / "a.fa", ">a\nAC\n>b\nGTT\n")
    np.testing.assert_array_equal(one_hot_dna(read_fasta(path)), one_hot_dna(["AC", "GTT"]))
    np.testing.assert_array_equal(one_hot_dna(iter_fasta(path)), one_hot_dna(["AC", "GTT"]))
    assert one_hot_dna("ACGT").shape == (1, 4, 4)
    assert one_hot_dna([]).shape == (0, 4, 0)


def test_one_hot_argument_errors():
    with pytest.raises(ValueError, match="one_hot_dna: unknown must be one of"):
        one_hot_dna("A", unknown="skip")
    with pytest.raises(ValueError, match="one_hot_dna: alphabet must be an ordering"):
        one_hot_dna("A", alphabet="ACGN")
    with pytest.raises(ValueError, match="one_hot_dna: alphabet must be an ordering"):
        one_hot_dna("A", alphabet="ACG")
    with pytest.raises(TypeError, match="one_hot_dna: alphabet must be a string"):
        one_hot_dna("A", alphabet=None)
    with pytest.raises(TypeError, match="one_hot_dna: dtype must be float32 or float64"):
        one_hot_dna("A", dtype=np.int64)
    with pytest.raises(TypeError, match="one_hot_dna: dtype must be float32 or float64"):
        one_hot_dna("A", dtype=np.float16)
    with pytest.raises(ValueError, match="one_hot_dna: length must be >= 0, got -1"):
        one_hot_dna("A", length=-1)
    with pytest.raises(TypeError, match="one_hot_dna: length must be an int"):
        one_hot_dna("A", length=2.5)
    with pytest.raises(TypeError, match="one_hot_dna: sequence 1 is a bytes"):
        one_hot_dna(["A", b"C"])
    with pytest.raises(TypeError, match="one_hot_dna: expected a string or an iterable"):
        one_hot_dna(b"ACGT")
    with pytest.raises(TypeError, match="one_hot_dna: expected a string or an iterable"):
        one_hot_dna(5)


# ------------------------------------------------------------------------ reverse complement

def test_reverse_complement_strings():
    assert reverse_complement("AACGTT") == "AACGTT"
    assert reverse_complement("AAAC") == "GTTT"
    assert reverse_complement("acgTN") == "NAcgt"                        # case kept
    # Each IUPAC code complements to the code of the complementary bases.
    assert reverse_complement("RYSWKMBDHVN") == "NBDHVKMWSRY"
    assert reverse_complement("") == ""
    assert reverse_complement("ACGU") == "ACGU"                          # RNA stays RNA
    assert reverse_complement("AAgu") == "acUU"


def test_reverse_complement_iupac_is_defined_by_the_complementary_bases():
    pairs = {"A": "T", "C": "G", "G": "C", "T": "A"}
    for code, bases in IUPAC_DNA.items():
        if code == "U":
            continue
        complement = reverse_complement(code)
        assert set(IUPAC_DNA[complement]) == {pairs[b] for b in bases}


def test_reverse_complement_errors():
    with pytest.raises(ValueError, match="reverse_complement: position 2: character 'X'"):
        reverse_complement("ACXT")
    with pytest.raises(ValueError, match="mixes T and U"):
        reverse_complement("ACTU")
    with pytest.raises(TypeError, match="reverse_complement: expected a str, got bytes"):
        reverse_complement(b"ACGT")


def test_reverse_complement_one_hot_matches_strings_for_every_code():
    codes = "ACGT" + AMBIGUOUS
    sequences = [codes, codes[::-1], "GATTACAGATTACAG"]          # equal lengths: no padding
    x = one_hot_dna(sequences, dtype=np.float64)
    expected = one_hot_dna([reverse_complement(s) for s in sequences], dtype=np.float64)
    np.testing.assert_array_equal(reverse_complement_one_hot(x), expected)
    # For ACGT order it is flipping both axes.
    np.testing.assert_array_equal(reverse_complement_one_hot(x), x[:, ::-1, ::-1])
    assert reverse_complement_one_hot(x).flags.c_contiguous


def test_reverse_complement_one_hot_other_order_and_single_sequence():
    x = one_hot_dna(["ACGGTR"], alphabet="GATC")
    expected = one_hot_dna([reverse_complement("ACGGTR")], alphabet="GATC")
    np.testing.assert_array_equal(reverse_complement_one_hot(x, alphabet="GATC"), expected)
    np.testing.assert_array_equal(reverse_complement_one_hot(x[0], alphabet="GATC"), expected[0])


def test_reverse_complement_one_hot_with_lengths_keeps_padding_at_the_end():
    sequences = ["ACGTT", "GGA", "", "R"]
    x, lengths = one_hot_dna(sequences, return_lengths=True)
    expected = one_hot_dna([reverse_complement(s) for s in sequences], length=x.shape[-1])
    np.testing.assert_array_equal(reverse_complement_one_hot(x, lengths=lengths), expected)


def test_reverse_complement_one_hot_errors():
    with pytest.raises(ValueError, match=r"expected an array of shape \(\.\.\., 4, L\), got "
                                         r"\(2, 5, 3\)"):
        reverse_complement_one_hot(np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"got \(4,\)"):
        reverse_complement_one_hot(np.zeros(4))
    x = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match=r"lengths must be integers of shape \(2,\)"):
        reverse_complement_one_hot(x, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 3\]"):
        reverse_complement_one_hot(x, lengths=[1, 4])
    with pytest.raises(ValueError, match=r"lengths= needs x of shape \(N, 4, L\)"):
        reverse_complement_one_hot(x[0], lengths=[1])
