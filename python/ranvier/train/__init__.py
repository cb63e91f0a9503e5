"""ranvier.train: the Keras-like training workflow on ranvier models.

- ``fit(model, train_data, *, loss, optimizer, epochs, ...) -> History``; ``evaluate``; ``predict``
- callbacks: ``Callback``, ``EarlyStopping``, ``ModelCheckpoint``, ``LearningRateScheduler``
  (gradient clipping is ``fit(..., clip_grad_norm=max_norm)``)
- checkpoints that resume bit for bit: ``fit(..., resume=path)``, ``save_checkpoint``,
  ``load_checkpoint``
- ``TrainingDivergedError`` when the loss turns NaN or infinite
"""

from .callbacks import Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint
from .checkpoint import load_checkpoint, save_checkpoint
from .history import History
from .loop import TrainingDivergedError, evaluate, fit, predict

__all__ = ["fit", "evaluate", "predict", "History", "TrainingDivergedError",
           "Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler",
           "save_checkpoint", "load_checkpoint"]
