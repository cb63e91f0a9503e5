"""ranvier.data: data helpers for biology (sequences now; datasets, loaders and transforms to come).

- ``read_fasta`` / ``iter_fasta``: FASTA records (plain or gzip), with clear errors.
- ``one_hot_dna``: DNA/RNA strings -> ``(N, 4, L)`` arrays for ``nn.Conv1d`` (IUPAC codes handled
  as documented in ``ranvier.data.sequences``).
- ``reverse_complement`` (strings) and ``reverse_complement_one_hot`` (arrays).
- ``packaged_file``: a data file shipped inside an installed package, found without importing it.
"""

from .packaged import packaged_file
from .sequences import (IUPAC_DNA, FastaRecord, iter_fasta, one_hot_dna, read_fasta,
                        reverse_complement, reverse_complement_one_hot)

__all__ = [
    "FastaRecord", "iter_fasta", "read_fasta",
    "IUPAC_DNA", "one_hot_dna", "reverse_complement", "reverse_complement_one_hot",
    "packaged_file",
]
