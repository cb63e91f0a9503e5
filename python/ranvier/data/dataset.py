"""Datasets and mini-batch loading: ``Dataset``, ``TensorDataset``, ``DataLoader``, and
``train_val_test_split``.

Conventions (tested in tests/test_data_loading.py):

- A ``Dataset`` has ``__len__`` and ``__getitem__(i)`` returning one sample: a tuple of
  arrays or numbers (``(x, y)``), or a single array.
- ``DataLoader`` yields every batch as a **tuple** of batched arrays, one per field of a
  sample (a dataset of single arrays gives 1-tuples), so ``for x, y in loader`` always works.
  NumPy stays NumPy and CuPy stays CuPy. Batches are fresh arrays (copies), never views
  into the dataset, so changing a batch in place never changes the data.
- ``TensorDataset`` takes the fast path: each field is indexed once with the batch's index
  array (no Python loop over samples). Other datasets are read sample by sample and the
  fields stacked with ``np.stack`` (``cupy.stack`` for CuPy samples).
- Shuffling draws a permutation per epoch (per ``iter(loader)``) from the loader's own
  ``np.random.Generator``: ``PCG64(seed)`` when ``seed`` is given, else seeded at
  construction from ``ranvier.random.default_generator.numpy`` (so ``ranvier.manual_seed``
  before building the loader makes the order reproducible; the default generator is only
  touched when ``shuffle=True`` and ``seed=None``).
- ``state_dict()`` / ``load_state_dict()`` capture the shuffling generator, the number of
  completed epochs, and, during an epoch, the generator state before that epoch's
  permutation and the number of batches already yielded: a loader restored from a state
  taken between epochs continues with the next epoch's order; one restored from a state
  taken mid-epoch redraws the same permutation and skips the batches already yielded, so
  the remaining batches are exactly those the original run would have seen.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np

from .._arrays import array_module, is_cuda_array
from .. import random as _random
from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "DataLoader", "train_val_test_split"]


def _unwrap(value):
    """The array inside a Tensor; anything else unchanged."""
    return value.data if isinstance(value, Tensor) else value


def _as_field_array(op: str, value, position: int):
    """A NumPy or CuPy array from an array, Tensor, list or number."""
    value = _unwrap(value)
    if is_cuda_array(value) or isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{op}: argument {position} cannot be converted to an array "
                        f"({type(value).__name__}: {exc})") from None


def _check_count(op: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return int(value)


def _check_seed(op: str, seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{op}: seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


def _seeded_generator(seed) -> np.random.Generator:
    """PCG64(seed), or one seeded from ranvier's default generator when seed is None."""
    if seed is None:
        seed = int(_random.default_generator.numpy.integers(0, 2**63))
    return np.random.Generator(np.random.PCG64(seed))


# ---------------------------------------------------------------------------------- datasets

class Dataset:
    """Base class of map-style datasets: subclasses define ``__len__`` and ``__getitem__``.

    ``__getitem__(i)`` returns one sample, usually a tuple ``(x, y)`` of arrays or numbers.

    Example:
        >>> class Squares(Dataset):
        ...     def __len__(self):
        ...         return 10
        ...     def __getitem__(self, i):
        ...         return np.array([i], dtype=np.float32), np.float32(i * i)
    """

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """A dataset over arrays that share their first dimension: sample ``i`` is
    ``(arrays[0][i], arrays[1][i], ...)``.

    Args:
        *arrays: NumPy arrays, CuPy arrays, ranvier Tensors (their array is used, without
            copying) or anything ``np.asarray`` accepts; at least one, each with at least
            one dimension, all of the same length along the first axis.

    Attributes:
        arrays: the tuple of arrays (NumPy or CuPy).

    Example:
        >>> ds = TensorDataset(np.zeros((100, 20), np.float32), np.arange(100))
        >>> x0, y0 = ds[0]            # shapes (20,) and ()
    """

    def __init__(self, *arrays):
        op = "TensorDataset"
        if not arrays:
            raise ValueError(f"{op}: needs at least one array")
        converted = tuple(_as_field_array(op, a, i) for i, a in enumerate(arrays))
        for i, a in enumerate(converted):
            if a.ndim == 0:
                raise ValueError(f"{op}: array {i} is a scalar (shape ()); every array needs a "
                                 f"first (sample) dimension")
        lengths = [int(a.shape[0]) for a in converted]
        if len(set(lengths)) != 1:
            shapes = ", ".join(str(tuple(a.shape)) for a in converted)
            raise ValueError(f"{op}: all arrays must have the same length along the first "
                             f"dimension, got shapes {shapes}")
        array_module(*converted)  # mixing NumPy and CuPy arrays raises here
        self.arrays = converted

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(a.shape)) for a in self.arrays)
        return f"TensorDataset({shapes})"


# ------------------------------------------------------------------------------------ loader

def _stack_field(op: str, values: list, field: int):
    """Stack one field of a batch's samples: (B, ...) NumPy, or CuPy for CuPy samples."""
    values = [_unwrap(v) for v in values]
    xp = array_module(*values)
    try:
        return xp.stack([xp.asarray(v) for v in values])
    except ValueError as exc:
        shapes = sorted({tuple(xp.asarray(v).shape) for v in values})
        raise ValueError(f"{op}: cannot stack field {field} of the samples: shapes differ "
                         f"({', '.join(map(str, shapes[:4]))}) ({exc})") from None


class DataLoader:
    """Mini-batches of a dataset, optionally shuffled every epoch.

    Args:
        dataset: a ``Dataset`` (anything with ``__len__`` and ``__getitem__``);
            ``TensorDataset`` gets the vectorised fast path.
        batch_size: samples per batch (>= 1).
        shuffle: draw a new order every epoch (each ``iter(loader)``).
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        seed: seed of the loader's shuffling generator; ``None`` seeds it from ranvier's
            default generator (``ranvier.manual_seed`` makes that reproducible).
        transform: ``None``, or a callable applied to every batch as
            ``transform(*fields) -> tuple of fields`` (e.g. ``lambda x, y:
            (random_horizontal_flip(x), y)`` for augmentation). Its random decisions should
            come from ranvier's default generator (the ``ranvier.data`` augmentations' default):
            then ``ranvier.manual_seed`` makes them reproducible and ``fit``'s checkpoints
            resume them exactly.

    Yields:
        tuples of batched arrays, one per field of a sample: ``(x_batch, y_batch)`` with
        shapes ``(B, ...)``; ``B == batch_size`` except possibly for the last batch.

    ``len(loader)`` is the number of batches per epoch. ``state_dict()`` and
    ``load_state_dict()`` save and restore the shuffling state for exact resumption (see the
    module docstring).

    Example:
        >>> loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=0)
        >>> for x_batch, y_batch in loader:
        ...     ...
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int | None = None, transform=None):
        op = "DataLoader"
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"{op}: dataset must define __len__ and __getitem__ (a Dataset), "
                            f"got {type(dataset).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"{op}: transform must be callable or None, got {type(transform).__name__}")
        self.transform = transform
        self.dataset = dataset
        self.batch_size = _check_count(op, "batch_size", batch_size, 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = _check_seed(op, seed)
        self._generator = _seeded_generator(self.seed) if self.shuffle else None
        self._epochs_completed = 0
        # During an epoch: the generator state before its permutation, and batches yielded.
        self._epoch_start_state = None
        self._batches_yielded = 0
        # Set by load_state_dict from a mid-epoch state: the next epoch skips this many.
        self._resume_skip = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            return self._generator.permutation(n)
        return np.arange(n)

    def _batch(self, indices: np.ndarray) -> tuple:
        if isinstance(self.dataset, TensorDataset):
            return tuple(a[array_module(a).asarray(indices)] for a in self.dataset.arrays)
        samples = [self.dataset[int(i)] for i in indices]
        as_tuples = [tuple(s) if isinstance(s, (tuple, list)) else (s,) for s in samples]
        n_fields = {len(s) for s in as_tuples}
        if len(n_fields) != 1:
            raise ValueError(f"DataLoader: the samples of one batch have different numbers of "
                             f"fields ({sorted(n_fields)})")
        return tuple(_stack_field("DataLoader", [s[f] for s in as_tuples], f)
                     for f in range(n_fields.pop()))

    def __iter__(self):
        start_state = (copy.deepcopy(self._generator.bit_generator.state)
                       if self.shuffle else None)
        skip, self._resume_skip = self._resume_skip, 0
        order = self._order()
        n_batches = len(self)
        self._epoch_start_state = start_state
        self._batches_yielded = skip
        for b in range(skip, n_batches):
            indices = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = self._batch(indices)
            if self.transform is not None:
                batch = self._transformed(batch)
            self._batches_yielded = b + 1
            yield batch
        self._epochs_completed += 1
        self._epoch_start_state = None
        self._batches_yielded = 0

    def _transformed(self, batch: tuple) -> tuple:
        result = self.transform(*batch)
        if not isinstance(result, (tuple, list)) or len(result) != len(batch):
            got = (f"a {type(result).__name__} of {len(result)}" if isinstance(result, (tuple, list))
                   else f"a {type(result).__name__}")
            raise TypeError(f"DataLoader: transform must return a tuple of {len(batch)} fields "
                            f"(one per field it was given), got {got}")
        return tuple(result)

    # ------------------------------------------------------------------ exact resumption

    def state_dict(self) -> dict:
        """A JSON-serialisable snapshot: ``{"epochs_completed", "generator", "batches_yielded"}``.

        ``generator`` is the shuffling generator's state (``None`` without shuffling): during
        an epoch, its state before that epoch's permutation, with ``batches_yielded`` the
        number of batches already yielded; between epochs, its current state and 0.
        """
        in_epoch = self._batches_yielded > 0 or self._epoch_start_state is not None
        if in_epoch:
            generator_state = self._epoch_start_state
        else:
            generator_state = (self._generator.bit_generator.state if self.shuffle else None)
        return {"epochs_completed": self._epochs_completed,
                "generator": copy.deepcopy(generator_state),
                "batches_yielded": self._batches_yielded if in_epoch else 0}

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict()``: the next ``iter()`` continues exactly where it was taken."""
        op = "DataLoader.load_state_dict"
        try:
            epochs = int(state["epochs_completed"])
            generator_state = state["generator"]
            skip = int(state["batches_yielded"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{op}: not a DataLoader state ({exc!r})") from None
        if (generator_state is None) == self.shuffle:
            raise ValueError(f"{op}: the state was saved from a loader with shuffle="
                             f"{not self.shuffle}, this one has shuffle={self.shuffle}")
        if not 0 <= skip <= len(self):
            raise ValueError(f"{op}: batches_yielded={skip} is outside [0, {len(self)}] "
                             f"(the dataset or batch size changed?)")
        if self.shuffle:
            generator = np.random.Generator(np.random.PCG64())
            try:
                generator.bit_generator.state = copy.deepcopy(generator_state)
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"{op}: bad generator state ({exc})") from None
            self._generator = generator
        self._epochs_completed = epochs
        self._resume_skip = skip
        self._epoch_start_state = None
        self._batches_yielded = 0

    def __repr__(self) -> str:
        return (f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last})")


# ------------------------------------------------------------------------------------ splits

def _part_count(op: str, name: str, size, n: int) -> int:
    """A held-out part's number of samples from a fraction in [0, 1) or a count."""
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a fraction in [0, 1) or a count, got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0.0 <= size < 1.0:
            raise ValueError(f"{op}: {name} as a fraction must lie in [0, 1), got {size}")
        return int(math.ceil(size * n))  # held-out parts round up, as scikit-learn's do
    if size < 0:
        raise ValueError(f"{op}: {name} must be >= 0, got {size}")
    return int(size)


def _host_labels(values) -> np.ndarray:
    values = _unwrap(values)
    if is_cuda_array(values):
        values = values.get()
    return np.asarray(values)


def _stratified_counts(op: str, classes, class_sizes: np.ndarray, n_val: int, n_test: int,
                       n: int) -> np.ndarray:
    """(n_classes, 3) counts per class for train, val, test.

    Each held-out part's total is shared among the classes in proportion to their sizes
    (largest remainders get the leftover samples), then every class gets at least one member
    in every requested part, so totals may exceed the requested sizes by a few samples.
    """
    counts = np.zeros((class_sizes.size, 3), dtype=np.int64)
    for column, total in ((1, n_val), (2, n_test)):
        if total == 0:
            continue
        quotas = class_sizes * (total / n)
        base = np.floor(quotas).astype(np.int64)
        leftover = total - int(base.sum())
        order = np.argsort(-(quotas - base), kind="stable")
        base[order[:leftover]] += 1
        counts[:, column] = np.maximum(base, 1)
    counts[:, 0] = class_sizes - counts[:, 1] - counts[:, 2]
    parts = 1 + (n_val > 0) + (n_test > 0)
    too_small = np.flatnonzero(counts[:, 0] < 1)
    if too_small.size:
        listed = ", ".join(f"{classes[i].item()!r} ({class_sizes[i]})" for i in too_small[:5])
        raise ValueError(f"{op}: stratification needs at least {parts} members of every class "
                         f"(one per part, with the rest in train); too few in class(es) "
                         f"{listed}")
    return counts


def train_val_test_split(*arrays, val_size=0.1, test_size=0.1, stratify=None, seed=None):
    """Split arrays into random train, validation and test parts (optionally stratified).

    Args:
        *arrays: NumPy or CuPy arrays (or Tensors, lists) of equal length along the first axis.
        val_size, test_size: a fraction in ``[0, 1)`` of the samples (rounded up) or a number
            of samples. ``0`` leaves that part empty on purpose (``test_size=0`` for a plain
            train/validation split); a part asked for must receive at least one sample.
        stratify: ``None``, or ``(n,)`` class labels: each class is split in the same
            proportions, and every class gets at least one member in every part asked for.
            Part sizes may then exceed the requested ones by up to one sample per class.
        seed: seed of the shuffling; ``None`` draws one from ranvier's default generator.

    Returns:
        ``(train, val, test)``: three tuples, each holding one array per input array (in the
        order given), rows in random order. Arrays stay NumPy or CuPy; Tensors come back as
        their arrays. ``(x_tr, y_tr), (x_va, y_va), (x_te, y_te) = train_val_test_split(x, y)``.

    Raises:
        ValueError: no arrays, unequal lengths, sizes that leave a part (or train) empty,
            stratification labels of the wrong length, a class too small to appear in
            every part.
    """
    op = "train_val_test_split"
    if not arrays:
        raise ValueError(f"{op}: needs at least one array")
    arrays = TensorDataset(*arrays).arrays  # the same conversion and length check
    n = int(arrays[0].shape[0])
    n_val = _part_count(op, "val_size", val_size, n)
    n_test = _part_count(op, "test_size", test_size, n)
    if n_val + n_test >= n:
        raise ValueError(f"{op}: val_size={val_size!r} and test_size={test_size!r} take "
                         f"{n_val} + {n_test} of {n} samples, leaving no training samples")
    requested_empty = [name for name, size, count in (("val_size", val_size, n_val),
                                                     ("test_size", test_size, n_test))
                       if size != 0 and count == 0]
    if requested_empty:
        raise ValueError(f"{op}: {requested_empty[0]} gives an empty part for {n} samples")
    generator = _seeded_generator(_check_seed(op, seed))
    if stratify is None:
        order = generator.permutation(n)
        parts = (order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test])
    else:
        labels = _host_labels(stratify)
        if labels.shape != (n,):
            raise ValueError(f"{op}: stratify must have shape ({n},) like the arrays' first "
                             f"dimension, got {labels.shape}")
        classes, inverse, class_sizes = np.unique(labels, return_inverse=True,
                                                  return_counts=True)
        counts = _stratified_counts(op, classes, class_sizes, n_val, n_test, n)
        train, val, test = [], [], []
        for c in range(classes.size):
            members = generator.permutation(np.flatnonzero(inverse.reshape(-1) == c))
            n_c_val, n_c_test = counts[c, 1], counts[c, 2]
            val.append(members[:n_c_val])
            test.append(members[n_c_val:n_c_val + n_c_test])
            train.append(members[n_c_val + n_c_test:])
        # Mix the classes within each part.
        parts = tuple(generator.permutation(np.concatenate(p)) for p in (train, val, test))
    return tuple(tuple(a[array_module(a).asarray(indices)] for a in arrays) for indices in parts)
