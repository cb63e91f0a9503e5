"""ranvier.nn: layers, losses and the Module machinery, with PyTorch's names and layouts."""

from . import functional, init
from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .container import Sequential
from .conv import Conv1d, Conv2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module
from .parameter import Parameter
# convolution issue: pooling and batch normalisation
from .batchnorm import BatchNorm1d, BatchNorm2d
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d,
                      MaxPool2d)

__all__ = [
    "functional", "init", "Module", "Parameter",
    "Linear", "Identity", "Flatten",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax",
    "Dropout", "Sequential",
    "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
    "Conv1d", "Conv2d",
]
__all__ += [
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
    "BatchNorm1d", "BatchNorm2d",
]

# --- training workflow (issue 6): gradient clipping, freeze/unfreeze ---
from . import utils

__all__ += ["utils"]
