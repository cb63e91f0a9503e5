"""Biological sequences: read FASTA files, one-hot encode DNA and protein, reverse complement.

Conventions (the decisions a user should know, all tested in tests/test_data_sequences.py):

FASTA (``read_fasta`` / ``iter_fasta``)
    - A record is a header line ``>name ...`` followed by any number of sequence lines, which
      are joined. ``name`` is the whole header after ``>`` with surrounding whitespace removed
      (``"chr1:100-300 peak 7"``); ``name.split()[0]`` is the identifier most tools use.
    - Blank lines are skipped anywhere; spaces and tabs inside a sequence line are dropped;
      ``\\n``, ``\\r\\n`` (Windows) and ``\\r`` line endings are all accepted.
    - Gzip-compressed input is recognised by its magic bytes (``1f 8b``), not by the file name.
    - Sequences keep their case: lowercase (soft-masked repeats) is information, and the
      encoders below accept it.
    - A record with no sequence lines gives an empty sequence (a valid, if useless, record).
    - ``ValueError`` naming the file and the line for: a sequence line before the first header,
      an empty name, and a character outside the alphabet. The default alphabet ``"dna"`` is
      the IUPAC nucleotide code ``ACGTUNRYSWKMBDHV`` in either case; gaps (``-``, ``.``) and
      anything else are refused. ``alphabet="protein"`` accepts the IUPAC amino-acid letters
      (the 20 standard ones, ``BZJUOX`` and the stop ``*``); ``alphabet=None`` checks nothing.

One-hot DNA (``one_hot_dna``)
    - Output shape ``(N, 4, L)``: channels first, the layout ``nn.Conv1d`` expects
      (batch, channels, length). Channel order is ``alphabet``, ``"ACGT"`` by default.
    - ``A C G T`` (and ``U``, read as ``T``) in either case give a one in their channel.
    - IUPAC ambiguity codes, with ``unknown=``:
        ``"spread"`` (default) spreads the base's probability evenly over the bases the code
        stands for: ``R`` (A/G) -> 0.5, 0.5; ``B`` (C/G/T) -> 1/3 each; ``N`` -> 0.25 each.
        ``"uniform"`` gives every ambiguity code 0.25 in each channel (the code's partial
        information is dropped), ``"zeros"`` gives it an all-zero column, ``"error"`` raises.
      The codes: R=AG Y=CT S=CG W=AT K=GT M=AC B=CGT D=AGT H=ACT V=ACG N=ACGT.
    - Characters outside the IUPAC code (``-``, ``X``, digits, ...) always raise
      ``ValueError`` naming the sequence's index, the position and the character.
    - Lengths: ``length=None`` pads every sequence to the longest one; ``length=L`` pads
      shorter sequences and cuts longer ones to their first ``L`` bases. Padding goes at the
      end (the 3' side) and is all-zero columns, so it is distinguishable from ``N`` under
      the default ``"spread"``. ``return_lengths=True`` also returns the number of real
      (unpadded, uncut) positions of each sequence, an int64 array of shape ``(N,)``.

One-hot protein (``one_hot_protein``)
    - Output shape ``(N, 21, L)``: channels 0..19 the standard amino acids in the order
      ``AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"``, channel 20 "unknown" for ``X`` (any), ``B``
      (D/N), ``Z`` (E/Q), ``J`` (I/L), ``U`` (selenocysteine) and ``O`` (pyrrolysine); either
      case. ``unknown="zeros"`` gives those an all-zero column instead, ``"error"`` raises.
    - The stop ``*``, gaps and other characters raise ``ValueError`` (sequence, position,
      character).
    - Lengths, padding and ``return_lengths`` exactly as for ``one_hot_dna`` (one shared
      encoder).

Reverse complement
    - ``reverse_complement(seq)`` on strings, IUPAC-aware (R<->Y, K<->M, B<->V, D<->H, S, W and
      N map to themselves), case kept. RNA stays RNA: a sequence containing ``U`` and no ``T``
      complements ``A`` to ``U``; one mixing ``T`` and ``U`` is refused.
    - ``reverse_complement_one_hot(x)`` on ``(..., 4, L)`` arrays reverses the length axis and
      swaps the complementary channels (with ``ACGT`` order this is reversing both axes). The
      soft encodings above map exactly onto the encoding of the reverse complement
      (``R`` = 0.5 A + 0.5 G becomes 0.5 T + 0.5 C = ``Y``). With ``lengths=`` only each
      sequence's real positions are reversed and the padding stays at the end.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from .._arrays import array_module

__all__ = [
    "FastaRecord", "iter_fasta", "read_fasta",
    "IUPAC_DNA", "one_hot_dna", "reverse_complement", "reverse_complement_one_hot",
    "AMINO_ACIDS", "UNKNOWN_AMINO_ACIDS", "one_hot_protein",
]

# The bases each IUPAC nucleotide code stands for (U is RNA's T).
IUPAC_DNA: dict[str, str] = {
    "A": "A", "C": "C", "G": "G", "T": "T", "U": "T",
    "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT", "M": "AC",
    "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT",
}

_COMPLEMENT_DNA = {
    "A": "T", "C": "G", "G": "C", "T": "A",
    "R": "Y", "Y": "R", "S": "S", "W": "W", "K": "M", "M": "K",
    "B": "V", "V": "B", "D": "H", "H": "D", "N": "N",
}

_FASTA_ALPHABETS = {
    "dna": frozenset("ACGTUNRYSWKMBDHV" + "acgtunryswkmbdhv"),
    "protein": frozenset("ACDEFGHIKLMNPQRSTVWYBZJUOX*" + "acdefghiklmnpqrstvwybzjuox"),
    None: None,
}

_GZIP_MAGIC = b"\x1f\x8b"


# ----------------------------------------------------------------------------------- FASTA

class FastaRecord(NamedTuple):
    """One FASTA record; unpacks as ``name, sequence``."""

    name: str
    sequence: str


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _binary_lines(raw) -> Iterator[str]:
    """The text lines of a binary stream, gunzipped when it starts with gzip's magic bytes.

    The wrappers made here are detached at the end, so that a stream the caller passed in is
    left open (a wrapper that is garbage-collected would otherwise close it).
    """
    buffered = raw
    if not hasattr(raw, "peek"):
        buffered = io.BufferedReader(raw if hasattr(raw, "readinto") else io.BytesIO(raw.read()))
    decompressed = buffered
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        decompressed = gzip.GzipFile(fileobj=buffered, mode="rb")  # never closes its fileobj
    # newline=None: universal newlines (\n, \r\n, \r). Undecodable bytes become U+FFFD, which
    # the alphabet check then reports with its line instead of a bare UnicodeDecodeError.
    text = io.TextIOWrapper(decompressed, encoding="utf-8", errors="replace", newline=None)
    try:
        yield from text
    finally:
        # ValueError: the caller closed the stream already; nothing is left to protect.
        with contextlib.suppress(ValueError):
            text.detach()
            if buffered is not raw:
                buffered.detach()


def _lines(source) -> Iterator[str]:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as raw:
            yield from _binary_lines(raw)
        return
    if not hasattr(source, "read"):
        raise TypeError(f"read_fasta: expected a path or a file object, got "
                        f"{type(source).__name__}")
    if isinstance(source, io.TextIOBase):
        yield from source
        return
    yield from _binary_lines(source)


def iter_fasta(source, alphabet: str | None = "dna") -> Iterator[FastaRecord]:
    """Yield the records of a FASTA file one at a time (see the module docstring for the rules).

    Args:
        source: a path (``str`` or ``os.PathLike``), or an open file object in text or binary
            mode; plain or gzip-compressed.
        alphabet: ``"dna"`` (IUPAC nucleotides, the default), ``"protein"`` (IUPAC amino
            acids) or ``None`` (accept any character).

    Raises:
        ValueError: naming the file and line, for a sequence line before the first header, an
            empty name or a character outside the alphabet.
    """
    if alphabet not in _FASTA_ALPHABETS:
        raise ValueError(f"read_fasta: alphabet must be 'dna', 'protein' or None, "
                         f"got {alphabet!r}")
    allowed = _FASTA_ALPHABETS[alphabet]
    where = _source_name(source)
    # closing(): the file is closed as soon as this generator ends, errors included, rather
    # than whenever the garbage collector gets to it.
    with contextlib.closing(_lines(source)) as lines:
        yield from _parse_fasta(lines, where, alphabet, allowed)


def _parse_fasta(lines, where, alphabet, allowed) -> Iterator[FastaRecord]:
    name = None
    pieces: list[str] = []
    for line_number, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith(">"):
            if name is not None:
                yield FastaRecord(name, "".join(pieces))
            name = line[1:].strip()
            if not name:
                raise ValueError(f"read_fasta: {where}, line {line_number}: empty record name "
                                 f"(a header line must be '>name')")
            pieces = []
            continue
        if name is None:
            raise ValueError(f"read_fasta: {where}, line {line_number}: sequence data before "
                             f"the first '>' header line: {line[:40]!r}")
        residues = line.replace(" ", "").replace("\t", "")
        if allowed is not None and not allowed.issuperset(residues):
            column, bad = next((i, c) for i, c in enumerate(raw_line) if c not in allowed
                               and c not in " \t")
            raise ValueError(f"read_fasta: {where}, line {line_number}, column {column + 1}: "
                             f"character {bad!r} is not in the {alphabet} alphabet "
                             f"({''.join(sorted(c for c in allowed if c.isupper() or c == '*'))}, "
                             f"either case)")
        pieces.append(residues)
    if name is not None:
        yield FastaRecord(name, "".join(pieces))


def read_fasta(source, alphabet: str | None = "dna") -> list[FastaRecord]:
    """Read every record of a FASTA file into a list of ``(name, sequence)`` records.

    The same rules and arguments as ``iter_fasta`` (which yields the records lazily, for files
    too large to hold at once).

    Example:
        >>> records = read_fasta("peaks.fa.gz")
        >>> names = [name for name, _ in records]
        >>> x = one_hot_dna(records, length=200)      # (N, 4, 200)
    """
    return list(iter_fasta(source, alphabet=alphabet))


# --------------------------------------------------------------------------------- one-hot

_UNKNOWN_POLICIES = ("spread", "uniform", "zeros", "error")


def _check_alphabet(op: str, alphabet) -> str:
    if not isinstance(alphabet, str):
        raise TypeError(f"{op}: alphabet must be a string such as 'ACGT', got "
                        f"{type(alphabet).__name__}")
    canonical = alphabet.upper().replace("U", "T")
    if len(canonical) != 4 or set(canonical) != set("ACGT"):
        raise ValueError(f"{op}: alphabet must be an ordering of the four letters A, C, G, T "
                         f"(U for T), got {alphabet!r}")
    return canonical


def _dna_table(alphabet: str, unknown: str) -> tuple[np.ndarray, np.ndarray]:
    """A (256, 4) float64 table from ASCII code to channel weights, and a (256,) table saying
    which codes are allowed (IUPAC letters, either case)."""
    table = np.zeros((256, 4))
    allowed = np.zeros(256, dtype=bool)
    for code, bases in IUPAC_DNA.items():
        ambiguous = len(bases) > 1
        for letter in (code, code.lower()):
            allowed[ord(letter)] = not (ambiguous and unknown == "error")
            if not ambiguous or unknown == "spread":
                for base in bases:
                    table[ord(letter), alphabet.index(base)] = 1.0 / len(bases)
            elif unknown == "uniform":
                table[ord(letter)] = 0.25
            # "zeros": the row stays zero
    return table, allowed


def _check_float_dtype(op: str, dtype) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: dtype {dtype!r} is not a NumPy dtype") from None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _sequence_strings(op: str, sequences) -> list[str]:
    """A list of strings from a string, an iterable of strings, or of (name, sequence) records."""
    if isinstance(sequences, str):
        return [sequences]
    if isinstance(sequences, (bytes, np.ndarray)) or not isinstance(sequences, Iterable):
        raise TypeError(f"{op}: expected a string or an iterable of strings or (name, sequence) "
                        f"records, got {type(sequences).__name__}")
    strings = []
    for index, item in enumerate(sequences):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            item = item[1]
        if not isinstance(item, str):
            raise TypeError(f"{op}: sequence {index} is a {type(item).__name__}, expected a str "
                            f"or a (name, sequence) record")
        strings.append(item)
    return strings


def _bad_character(op: str, index: int, sequence: str, allowed: np.ndarray, refusal):
    for position, char in enumerate(sequence):
        if ord(char) > 255 or not allowed[ord(char)]:
            raise ValueError(f"{op}: sequence {index}, position {position}: character {char!r} "
                             f"{refusal(char)}")
    raise AssertionError("no bad character found")  # pragma: no cover


def _encode(op: str, strings: list[str], table: np.ndarray, allowed: np.ndarray, refusal,
            length, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Look every character up in `table` (256, C): returns ((N, C, L) array, (N,) lengths).

    Shared by the encoders of this module (each brings its own table); characters are checked
    against `allowed` first, and `refusal(char)` finishes the error message for a refused one.
    """
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
            raise TypeError(f"{op}: length must be an int or None, got {length!r}")
        if length < 0:
            raise ValueError(f"{op}: length must be >= 0, got {length}")
        length = int(length)
    codes_per_sequence = []
    for index, sequence in enumerate(strings):
        try:
            codes = np.frombuffer(sequence.encode("latin-1"), dtype=np.uint8)
        except UnicodeEncodeError:
            codes = None
        if codes is None or not allowed[codes].all():
            _bad_character(op, index, sequence, allowed, refusal)
        codes_per_sequence.append(codes)
    full_lengths = np.array([len(c) for c in codes_per_sequence], dtype=np.int64)
    width = int(full_lengths.max(initial=0)) if length is None else length
    # Code 0 is never an allowed character, so it marks padding and looks up a zero row.
    padded = np.zeros((len(strings), width), dtype=np.uint8)
    for row, codes in zip(padded, codes_per_sequence):
        kept = codes[:width]
        row[:kept.size] = kept
    encoded = table.astype(dtype)[padded]                       # (N, L, C)
    return np.ascontiguousarray(encoded.transpose(0, 2, 1)), np.minimum(full_lengths, width)


def one_hot_dna(sequences, length: int | None = None, alphabet: str = "ACGT",
                unknown: str = "spread", dtype=np.float32, return_lengths: bool = False):
    """One-hot encode DNA (or RNA) sequences, channels first for ``nn.Conv1d``.

    Args:
        sequences: one string, an iterable of strings, or of ``(name, sequence)`` records
            (what ``read_fasta`` returns).
        length: the output length ``L``; ``None`` uses the longest sequence. Shorter
            sequences are padded at the end with all-zero columns, longer ones keep their
            first ``length`` bases.
        alphabet: the channel order, an ordering of ``"ACGT"`` (``U`` accepted for ``T``).
        unknown: what an IUPAC ambiguity code (N, R, Y, ...) becomes: ``"spread"`` (default;
            its probability spread evenly over the bases it stands for, N -> 0.25 each),
            ``"uniform"`` (0.25 each whatever the code), ``"zeros"`` or ``"error"``.
        dtype: float32 (default) or float64.
        return_lengths: also return each sequence's number of encoded (non-padding) positions.

    Returns:
        An array of shape ``(N, 4, L)``, and with ``return_lengths`` an int64 array ``(N,)``.

    Raises:
        ValueError: a character outside the IUPAC code (naming the sequence index, position
            and character), an ambiguity code with ``unknown="error"``, a bad argument.

    Example:
        >>> one_hot_dna(["ACGTN", "rY"], unknown="spread")[1]
        array([[0.5, 0. , 0. , 0. , 0. ],
               [0. , 0.5, 0. , 0. , 0. ],
               [0.5, 0. , 0. , 0. , 0. ],
               [0. , 0.5, 0. , 0. , 0. ]], dtype=float32)
    """
    op = "one_hot_dna"
    canonical = _check_alphabet(op, alphabet)
    if unknown not in _UNKNOWN_POLICIES:
        raise ValueError(f"{op}: unknown must be one of {', '.join(map(repr, _UNKNOWN_POLICIES))}, "
                         f"got {unknown!r}")
    dtype = _check_float_dtype(op, dtype)
    table, allowed = _dna_table(canonical, unknown)

    def refusal(char: str) -> str:
        if char.upper() in IUPAC_DNA:
            return "is an IUPAC ambiguity code and unknown='error'"
        return "is not an IUPAC nucleotide code (ACGTU RYSWKM BDHV N, either case)"

    strings = _sequence_strings(op, sequences)
    encoded, lengths = _encode(op, strings, table, allowed, refusal, length, dtype)
    return (encoded, lengths) if return_lengths else encoded


# ------------------------------------------------------------------------- one-hot protein

# The 20 standard amino acids in alphabetical order of their one-letter codes: channels 0..19.
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# Codes that are not one of the 20: X (any), B (D or N), Z (E or Q), J (I or L),
# U (selenocysteine), O (pyrrolysine). They go to channel 20 under unknown="channel".
UNKNOWN_AMINO_ACIDS = "XBZJUO"
_PROTEIN_UNKNOWN_POLICIES = ("channel", "zeros", "error")


def _protein_table(unknown: str) -> tuple[np.ndarray, np.ndarray]:
    """A (256, 21) float64 table from ASCII code to channel weights, and the allowed codes."""
    table = np.zeros((256, len(AMINO_ACIDS) + 1))
    allowed = np.zeros(256, dtype=bool)
    for channel, letter in enumerate(AMINO_ACIDS):
        for case in (letter, letter.lower()):
            table[ord(case), channel] = 1.0
            allowed[ord(case)] = True
    for letter in UNKNOWN_AMINO_ACIDS:
        for case in (letter, letter.lower()):
            allowed[ord(case)] = unknown != "error"
            if unknown == "channel":
                table[ord(case), len(AMINO_ACIDS)] = 1.0
    return table, allowed


def one_hot_protein(sequences, length: int | None = None, unknown: str = "channel",
                    dtype=np.float32, return_lengths: bool = False):
    """One-hot encode protein sequences, channels first for ``nn.Conv1d``: ``(N, 21, L)``.

    Channels 0..19 are the standard amino acids in the order of ``AMINO_ACIDS``
    (``"ACDEFGHIKLMNPQRSTVWY"``), channel 20 is "unknown": the codes ``X`` (any), ``B``
    (D or N), ``Z`` (E or Q), ``J`` (I or L), ``U`` (selenocysteine) and ``O`` (pyrrolysine).
    Either case is accepted. The stop ``*``, gaps (``-``, ``.``) and anything else raise
    ``ValueError`` naming the sequence's index, the position and the character (strip a
    trailing stop with ``seq.rstrip("*")``).

    Args:
        sequences: one string, an iterable of strings, or of ``(name, sequence)`` records
            (``read_fasta(path, alphabet="protein")``).
        length: the output length ``L`` (as in ``one_hot_dna``): ``None`` pads to the longest
            sequence; shorter sequences are padded at the end (C-terminal side) with all-zero
            columns, longer ones keep their first ``length`` residues.
        unknown: what the unknown codes become: ``"channel"`` (default; a one in channel 20),
            ``"zeros"`` (an all-zero column; channel 20 then stays empty) or ``"error"``.
        dtype: float32 (default) or float64.
        return_lengths: also return each sequence's number of encoded (non-padding) positions,
            an int64 array ``(N,)``, e.g. for masking the padding.

    Returns:
        An array ``(N, 21, L)``, and with ``return_lengths`` the ``(N,)`` lengths.

    Example:
        >>> x, lengths = one_hot_protein(["MKV", "MX"], return_lengths=True)
        >>> x.shape, lengths.tolist(), x[1, 20, 1]
        ((2, 21, 3), [3, 2], 1.0)
    """
    op = "one_hot_protein"
    if unknown not in _PROTEIN_UNKNOWN_POLICIES:
        raise ValueError(f"{op}: unknown must be one of "
                         f"{', '.join(map(repr, _PROTEIN_UNKNOWN_POLICIES))}, got {unknown!r}")
    dtype = _check_float_dtype(op, dtype)
    table, allowed = _protein_table(unknown)

    def refusal(char: str) -> str:
        if char.upper() in UNKNOWN_AMINO_ACIDS:
            return "is an unknown/ambiguous amino-acid code and unknown='error'"
        if char == "*":
            return "is a stop; strip it first (sequence.rstrip('*'))"
        return (f"is not an amino-acid code ({AMINO_ACIDS} or {UNKNOWN_AMINO_ACIDS}, "
                f"either case)")

    strings = _sequence_strings(op, sequences)
    encoded, lengths = _encode(op, strings, table, allowed, refusal, length, dtype)
    return (encoded, lengths) if return_lengths else encoded


# ------------------------------------------------------------------------ reverse complement

def reverse_complement(sequence: str) -> str:
    """The reverse complement of a DNA or RNA string, IUPAC-aware and case-preserving.

    ``reverse_complement("ACGTnR") == "YnACGT"``; ``reverse_complement("ACGU") == "ACGU"``
    (RNA in, RNA out).

    Raises:
        TypeError: not a string. ValueError: a character outside the IUPAC nucleotide code
        (naming the position), or a sequence that mixes T and U.
    """
    op = "reverse_complement"
    if not isinstance(sequence, str):
        raise TypeError(f"{op}: expected a str, got {type(sequence).__name__}")
    has_t = "T" in sequence or "t" in sequence
    has_u = "U" in sequence or "u" in sequence
    if has_t and has_u:
        raise ValueError(f"{op}: the sequence mixes T and U (DNA and RNA); convert it first")
    complement = dict(_COMPLEMENT_DNA)
    if has_u:
        complement.update({"A": "U", "U": "A"})
    complement.update({k.lower(): v.lower() for k, v in complement.items()})
    try:
        return "".join(complement[c] for c in reversed(sequence))
    except KeyError:
        position, bad = next((i, c) for i, c in enumerate(sequence) if c not in complement)
        raise ValueError(f"{op}: position {position}: character {bad!r} is not an IUPAC "
                         f"nucleotide code") from None


def reverse_complement_one_hot(x, alphabet: str = "ACGT", lengths=None):
    """Reverse complement of one-hot DNA of shape ``(..., 4, L)`` (e.g. ``(N, 4, L)``).

    Reverses the length axis and swaps the channels of complementary bases (A<->T, C<->G),
    which for the default ``"ACGT"`` order is reversing the channel axis as well. Works on
    NumPy and CuPy arrays and returns a new contiguous array of the same kind and dtype.

    Args:
        x: array ``(..., 4, L)``.
        alphabet: the channel order ``x`` was encoded with.
        lengths: optional ``(N,)`` numbers of real positions for ``x`` of shape ``(N, 4, L)``
            (as ``one_hot_dna(..., return_lengths=True)`` returns): then only the first
            ``lengths[i]`` positions of sequence ``i`` are reversed and its padding stays at
            the end, so the result matches ``one_hot_dna`` of the reverse-complemented strings.
    """
    op = "reverse_complement_one_hot"
    canonical = _check_alphabet(op, alphabet)
    xp = array_module(x)
    x = xp.asarray(x)
    if x.ndim < 2 or x.shape[-2] != 4:
        raise ValueError(f"{op}: expected an array of shape (..., 4, L), got {tuple(x.shape)}")
    pairs = {"A": "T", "T": "A", "C": "G", "G": "C"}
    channel_order = [canonical.index(pairs[base]) for base in canonical]
    swapped = x[..., channel_order, :]
    if lengths is None:
        return xp.ascontiguousarray(swapped[..., ::-1])
    if x.ndim != 3:
        raise ValueError(f"{op}: lengths= needs x of shape (N, 4, L), got {tuple(x.shape)}")
    lengths = np.asarray(lengths.get() if hasattr(lengths, "get") else lengths)
    if lengths.shape != (x.shape[0],) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"{op}: lengths must be integers of shape ({x.shape[0]},), got "
                         f"{lengths.dtype} {lengths.shape}")
    width = x.shape[-1]
    if lengths.size and (lengths.min() < 0 or lengths.max() > width):
        raise ValueError(f"{op}: lengths must lie in [0, {width}], got values from "
                         f"{lengths.min()} to {lengths.max()}")
    # Position j of sequence i reads position lengths[i] - 1 - j (inside) or j (padding).
    positions = np.arange(width)[None, :]
    source = np.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    source = xp.asarray(np.broadcast_to(source[:, None, :], swapped.shape))
    return xp.ascontiguousarray(xp.take_along_axis(swapped, source, axis=-1))
