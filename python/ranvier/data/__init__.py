"""ranvier.data: datasets, mini-batch loaders, splits, transforms and sequence encoders for biology.

- ``read_fasta`` / ``iter_fasta``: FASTA records (plain or gzip), with clear errors.
- ``one_hot_dna``: DNA/RNA strings -> ``(N, 4, L)`` arrays for ``nn.Conv1d`` (IUPAC codes handled
  as documented in ``ranvier.data.sequences``).
- ``one_hot_protein``: protein strings -> ``(N, 21, L)`` (20 amino acids + unknown).
- ``reverse_complement`` (strings) and ``reverse_complement_one_hot`` (arrays).
- ``Dataset``, ``TensorDataset``, ``DataLoader`` (mini-batches, reproducible shuffling, exact
  resume), ``train_val_test_split`` (optionally stratified): see ``ranvier.data.dataset``.
- ``Standardize`` (fit on training data only), ``log1p`` (counts), image augmentations
  ``random_horizontal_flip``, ``random_vertical_flip``, ``random_rotate90``, ``random_crop``:
  see ``ranvier.data.transforms``.
- ``packaged_file``: a data file shipped inside an installed package, found without importing it.
"""

from .dataset import DataLoader, Dataset, TensorDataset, train_val_test_split
from .packaged import packaged_file
from .sequences import (IUPAC_DNA, FastaRecord, iter_fasta, one_hot_dna, read_fasta,
                        reverse_complement, reverse_complement_one_hot)
from .sequences import AMINO_ACIDS, UNKNOWN_AMINO_ACIDS, one_hot_protein
from .transforms import (Standardize, log1p, random_crop, random_horizontal_flip, random_rotate90,
                         random_vertical_flip)

__all__ = [
    "FastaRecord", "iter_fasta", "read_fasta",
    "IUPAC_DNA", "one_hot_dna", "reverse_complement", "reverse_complement_one_hot",
    "packaged_file",
    "Dataset", "TensorDataset", "DataLoader", "train_val_test_split",
    "AMINO_ACIDS", "UNKNOWN_AMINO_ACIDS", "one_hot_protein",
    "Standardize", "log1p", "random_horizontal_flip", "random_vertical_flip", "random_rotate90",
    "random_crop",
]
