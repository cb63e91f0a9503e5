"""ranvier: deep learning for biologists on hand-written C++ and CUDA kernels."""

from . import _C, cuda, ops
from .random import manual_seed
from .serialization import load, load_metadata, save

__version__ = "0.1.0"
