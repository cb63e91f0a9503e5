"""ranvier: deep learning for biologists on hand-written C++ and CUDA kernels."""

import os as _os

import numpy as _np

# Idle OpenMP threads spin briefly, then sleep (see ranvier.set_num_threads): read by the
# OpenMP runtime when _C loads it, then the environment is put back as it was.
_OMP_SLEEP_SOON = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}
_omp_wait_policy_set = "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ
if _omp_wait_policy_set:
    _os.environ.update(_OMP_SLEEP_SOON)
try:
    from . import _C
finally:
    if _omp_wait_policy_set:
        for _name in _OMP_SLEEP_SOON:
            del _os.environ[_name]
        del _name

from . import cuda, ops
from .random import manual_seed
from . import autograd
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .tensor import (Tensor, arange, empty, from_numpy, full, ones, ones_like, rand, randn, tensor,
                     zeros, zeros_like)
from . import nn
from . import optim
from .serialization import load, load_metadata, save

# --- data helpers and metrics (issue 3: sequences for the DNA example; ROC AUC) ---
from . import data, metrics

# dtypes, as PyTorch spells them (they are NumPy dtypes: tensor.dtype == ranvier.float32)
float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
int32 = _np.dtype(_np.int32)
int64 = _np.dtype(_np.int64)
uint8 = _np.dtype(_np.uint8)
bool = _np.dtype(_np.bool_)  # noqa: A001 (shadows the builtin inside this module only, as torch.bool)
float = float32  # noqa: A001
double = float64
long = int64

__version__ = "0.1.0"

from . import train  # noqa: E402
from .cpu import cpu_capabilities  # noqa: E402
from .cpu import get_num_threads, set_num_threads  # noqa: E402
