"""ranvier's random generator: one seed drives parameter initialisation, dropout and shuffling.

Two streams come from it:
- ``numpy``: a NumPy ``Generator`` (PCG64) for initialisation and shuffling, drawn on the host;
- a counter-based Philox stream for the kernels (dropout, ``ops.uniform``): each kernel call
  takes ``(seed, offset)`` from ``philox_offset(n)``, which advances the offset by the
  numbers used, so that CPU threads and GPU blocks can draw any slice independently and the
  same seed gives the same masks on every run.

``ranvier.manual_seed(s)`` reseeds both. ``get_state()``/``set_state()`` capture and restore
both, for checkpoints that resume bit for bit.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["Generator", "default_generator", "manual_seed", "initial_seed", "get_rng_state",
           "set_rng_state"]

_SEED_MASK = (1 << 64) - 1


class Generator:
    """A seedable source of random numbers for ranvier (see the module docstring)."""

    def __init__(self, seed: int | None = None):
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> "Generator":
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"manual_seed: seed must be an integer, got {type(seed).__name__}")
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"manual_seed: seed must be non-negative, got {seed}")
        self._seed = seed & _SEED_MASK
        self._numpy = np.random.Generator(np.random.PCG64(self._seed))
        self._philox_offset = 0
        return self

    def initial_seed(self) -> int:
        return self._seed

    @property
    def numpy(self) -> np.random.Generator:
        """The NumPy generator used for initialisation and shuffling."""
        return self._numpy

    def philox_offset(self, n: int) -> tuple[int, int]:
        """(seed, offset) for a kernel that draws n numbers; reserves them.

        The offset advances by n rounded up to a multiple of 4 (Philox yields four numbers
        per counter), so consecutive calls never share numbers.
        """
        if n < 0:
            raise ValueError(f"philox_offset: n must be non-negative, got {n}")
        offset = self._philox_offset
        self._philox_offset += (int(n) + 3) // 4 * 4
        return self._seed, offset

    def get_state(self) -> dict:
        """A JSON-serialisable snapshot of both streams."""
        return {"seed": self._seed, "philox_offset": self._philox_offset,
                "numpy": self._numpy.bit_generator.state}

    def set_state(self, state: dict) -> None:
        try:
            seed = int(state["seed"])
            offset = int(state["philox_offset"])
            numpy_state = state["numpy"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"set_state: not a ranvier generator state ({exc})") from None
        generator = np.random.Generator(np.random.PCG64())
        generator.bit_generator.state = numpy_state
        self._seed, self._philox_offset, self._numpy = seed & _SEED_MASK, offset, generator


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed ranvier's default generator: initialisation, dropout and shuffling become reproducible."""
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)
