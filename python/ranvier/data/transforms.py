"""Transforms: feature standardisation, log1p for counts, and random augmentations for
microscopy image patches.

- ``Standardize``: per-feature ``(x - mean) / std`` with the statistics of the data it was
  fitted on (fit it on the training split only, then transform validation and test data with
  the same statistics). Features with zero variance in the training data are centred but not
  scaled, so they become 0, never NaN. ``state_dict()`` / ``load_state_dict()`` save and
  restore the statistics alongside a model.
- ``log1p``: ``log(1 + x)`` for counts (reads, UMIs); negative values are refused.
- Image augmentations on ``(N, C, H, W)`` batches or single ``(C, H, W)`` patches, NumPy or
  CuPy: ``random_horizontal_flip``, ``random_vertical_flip``, ``random_rotate90`` (square
  patches), ``random_crop``. Each draws its random decisions from the
  ``np.random.Generator`` it is given (``None``: ranvier's default generator, which
  ``ranvier.manual_seed`` seeds), one decision per patch, and returns a new array; the input
  is never changed. Flips and rotations only move pixels (the output is a permutation of
  each patch's pixels), so they suit labels that do not depend on orientation.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._arrays import array_module
from .. import random as _random
from ..tensor import Tensor

__all__ = ["Standardize", "log1p", "random_horizontal_flip", "random_vertical_flip",
           "random_rotate90", "random_crop"]


def _array(op: str, x):
    """A NumPy or CuPy array from an array, Tensor or list, with a numeric dtype."""
    if isinstance(x, Tensor):
        x = x.data
    xp = array_module(x)
    x = xp.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected numbers, got dtype {x.dtype}")
    return xp, x


def _float_dtype(x) -> np.dtype:
    """float32/float64 inputs keep their dtype; integers and booleans become float64."""
    return x.dtype if x.dtype.kind == "f" and x.dtype.itemsize >= 4 else np.dtype(np.float64)


# ---------------------------------------------------------------------------- standardise

class Standardize:
    """Standardise features to zero mean and unit variance, with statistics from ``fit``.

    Statistics are taken over the first (sample) axis: for ``x`` of shape ``(n, features)``
    (or ``(n, ...)``) each feature gets its own mean and standard deviation (population
    std, ``ddof=0``, as scikit-learn's ``StandardScaler``). A feature that is constant in the
    fitted data keeps scale 1, so it transforms to exactly 0.

    Attributes (after ``fit``):
        mean: ``(features...)`` float64 means. std: the standard deviations (0 where
        constant). scale: what is divided by (``std``, with 1 where ``std`` is 0).

    Example:
        >>> scaler = Standardize().fit(x_train)
        >>> x_train_s, x_val_s = scaler.transform(x_train), scaler.transform(x_val)
        >>> extra = scaler.state_dict()          # save next to the model's weights
    """

    def __init__(self):
        self.mean = None
        self.std = None

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def scale(self) -> np.ndarray:
        self._check_fitted("Standardize.scale")
        return np.where(self.std == 0, 1.0, self.std)

    def fit(self, x) -> "Standardize":
        """Compute the per-feature mean and std of ``x`` ``(n, ...)``, n >= 1; returns self."""
        op = "Standardize.fit"
        xp, x = _array(op, x)
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{op}: needs at least one sample along the first axis, got shape "
                             f"{tuple(x.shape)}")
        x = x.astype(np.float64)
        if not bool(xp.isfinite(x).all()):
            raise ValueError(f"{op}: x contains NaN or infinite values; impute or drop them "
                             f"before fitting")
        mean = x.mean(axis=0)
        std = xp.sqrt(((x - mean) ** 2).mean(axis=0))
        to_host = (lambda a: a.get()) if xp is not np else np.asarray
        self.mean, self.std = to_host(mean), to_host(std)
        # Rounding can leave a tiny std for a constant feature (mean not exactly
        # representable); treat spreads below float64 resolution of the values as zero.
        resolution = 8 * np.finfo(np.float64).eps * np.maximum(np.abs(self.mean), 1e-300)
        self.std = np.where(self.std <= resolution, 0.0, self.std)
        return self

    def _check_fitted(self, op: str):
        if not self.fitted:
            raise RuntimeError(f"{op}: the Standardize is not fitted; call fit(x_train) first")

    def _checked(self, op: str, x):
        self._check_fitted(op)
        xp, x = _array(op, x)
        if tuple(x.shape[1:]) != self.mean.shape:
            raise ValueError(f"{op}: x has per-sample shape {tuple(x.shape[1:])}, but the "
                             f"Standardize was fitted on {self.mean.shape}")
        dtype = _float_dtype(x)
        return xp, x.astype(dtype, copy=False), dtype

    def transform(self, x):
        """``(x - mean) / scale``; float32/float64 keep their dtype, integers become float64."""
        xp, x, dtype = self._checked("Standardize.transform", x)
        return ((x - xp.asarray(self.mean, dtype=dtype)) / xp.asarray(self.scale, dtype=dtype))

    def fit_transform(self, x):
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, z):
        """``z * scale + mean``: undoes ``transform`` (constant features come back as their
        mean)."""
        xp, z, dtype = self._checked("Standardize.inverse_transform", z)
        return z * xp.asarray(self.scale, dtype=dtype) + xp.asarray(self.mean, dtype=dtype)

    def state_dict(self) -> dict:
        """``{"mean": array, "std": array}`` (float64 NumPy copies)."""
        self._check_fitted("Standardize.state_dict")
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    def load_state_dict(self, state: dict) -> "Standardize":
        """Restore statistics saved by ``state_dict`` (arrays or nested lists, e.g. from JSON)."""
        op = "Standardize.load_state_dict"
        try:
            mean = np.asarray(state["mean"], dtype=np.float64)
            std = np.asarray(state["std"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{op}: expected {{'mean': ..., 'std': ...}} ({exc!r})") from None
        if mean.shape != std.shape:
            raise ValueError(f"{op}: mean {mean.shape} and std {std.shape} differ in shape")
        if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std < 0).any():
            raise ValueError(f"{op}: mean and std must be finite and std non-negative")
        self.mean, self.std = mean, std
        return self

    def __repr__(self) -> str:
        features = "unfitted" if not self.fitted else f"features={self.mean.shape}"
        return f"Standardize({features})"


# ------------------------------------------------------------------------------------ log1p

def log1p(x, dtype=None):
    """``log(1 + x)`` of counts (or any non-negative values), elementwise.

    Args:
        x: NumPy or CuPy array (or Tensor, list) of non-negative numbers.
        dtype: the output dtype; default: float32/float64 kept, integers -> float64.

    Raises:
        ValueError: negative or NaN values (naming how many and the smallest).
        TypeError: non-numeric input.
    """
    op = "log1p"
    xp, x = _array(op, x)
    dtype = _float_dtype(x) if dtype is None else np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{op}: dtype must be a float dtype, got {dtype}")
    if x.dtype.kind == "f" and bool(xp.isnan(x).any()):
        raise ValueError(f"{op}: x contains {int(xp.isnan(x).sum())} NaN value(s)")
    if x.size and x.dtype.kind in "if" and bool((x < 0).any()):
        raise ValueError(f"{op}: counts must be non-negative, got {int((x < 0).sum())} negative "
                         f"value(s) (smallest {x.min().item()})")
    return xp.log1p(x.astype(dtype, copy=False))


# ---------------------------------------------------------------------- image augmentations

def _generator(op: str, rng) -> np.random.Generator:
    if rng is None:
        return _random.default_generator.numpy
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{op}: rng must be a numpy.random.Generator or None, got "
                        f"{type(rng).__name__}")
    return rng


def _image_batch(op: str, images):
    """(xp, (N, C, H, W) array, whether the input was a single (C, H, W) patch)."""
    if isinstance(images, Tensor):
        images = images.data
    xp = array_module(images)
    images = xp.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"{op}: expected images of shape (N, C, H, W) or (C, H, W), got "
                         f"{tuple(images.shape)}")
    single = images.ndim == 3
    return xp, (images[None] if single else images), single


def _check_probability(op: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _random_flip(op: str, images, rng, p, axis: int):
    p = _check_probability(op, p)
    rng = _generator(op, rng)
    xp, batch, single = _image_batch(op, images)
    flip = xp.asarray(rng.random(batch.shape[0]) < p)
    out = batch.copy()
    out[flip] = xp.flip(batch[flip], axis=axis)
    return out[0] if single else out


def random_horizontal_flip(images, rng=None, p: float = 0.5):
    """Mirror each patch left-right (along W) with probability ``p``.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)``. rng: ``np.random.Generator`` (or None).
        p: the probability that a patch is flipped.
    Returns:
        a new array of the same shape, kind and dtype.
    """
    return _random_flip("random_horizontal_flip", images, rng, p, axis=-1)


def random_vertical_flip(images, rng=None, p: float = 0.5):
    """Mirror each patch top-bottom (along H) with probability ``p`` (arguments as
    ``random_horizontal_flip``)."""
    return _random_flip("random_vertical_flip", images, rng, p, axis=-2)


def random_rotate90(images, rng=None):
    """Rotate each square patch by ``k * 90`` degrees, ``k`` drawn uniformly from 0..3.

    Rotation is ``np.rot90`` over the (H, W) axes (counter-clockwise for positive ``k``).
    Together with a flip this reaches all 8 symmetries of a square.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)`` with ``H == W``. rng: ``np.random.Generator``.
    Raises:
        ValueError: a non-square patch.
    """
    op = "random_rotate90"
    rng = _generator(op, rng)
    xp, batch, single = _image_batch(op, images)
    if batch.shape[-1] != batch.shape[-2]:
        raise ValueError(f"{op}: 90-degree rotations need square patches (H == W), got "
                         f"H={batch.shape[-2]}, W={batch.shape[-1]}")
    turns = rng.integers(0, 4, batch.shape[0])
    out = batch.copy()
    for k in (1, 2, 3):
        chosen = xp.asarray(turns == k)
        out[chosen] = xp.rot90(batch[chosen], k, axes=(-2, -1))
    return out[0] if single else out


def random_crop(images, size, rng=None):
    """Cut a window of ``size`` at a random position from each patch.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)``.
        size: ``h`` (a square window) or ``(h, w)``, with ``1 <= h <= H`` and ``1 <= w <= W``.
        rng: ``np.random.Generator`` (or None): each patch's top-left corner is drawn
            uniformly from the positions where the window fits.
    Returns:
        a new array ``(N, C, h, w)`` (or ``(C, h, w)``).
    """
    op = "random_crop"
    rng = _generator(op, rng)
    xp, batch, single = _image_batch(op, images)
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                       for s in size)):
        raise TypeError(f"{op}: size must be an int or a pair of ints, got {size!r}")
    n, channels, height, width = batch.shape
    crop_h, crop_w = int(size[0]), int(size[1])
    if not (1 <= crop_h <= height and 1 <= crop_w <= width):
        raise ValueError(f"{op}: crop size ({crop_h}, {crop_w}) does not fit patches of "
                         f"(H, W) = ({height}, {width})")
    top = rng.integers(0, height - crop_h + 1, n)
    left = rng.integers(0, width - crop_w + 1, n)
    # One gather for the whole batch: rows (N, h) and columns (N, w) of each window.
    rows = xp.asarray(top[:, None] + np.arange(crop_h))[:, None, :, None]
    cols = xp.asarray(left[:, None] + np.arange(crop_w))[:, None, None, :]
    samples = xp.arange(n)[:, None, None, None]
    chans = xp.arange(channels)[None, :, None, None]
    out = batch[samples, chans, rows, cols]
    return out[0] if single else out
