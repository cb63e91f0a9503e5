"""ranvier.nn: layers, losses and the Module machinery, with PyTorch's names and layouts."""

from . import functional, init
from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .container import Sequential
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module
from .parameter import Parameter

__all__ = [
    "functional", "init", "Module", "Parameter",
    "Linear", "Identity", "Flatten",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax",
    "Dropout", "Sequential",
    "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
]
