"""Checkpoint files: one safetensors file with everything needed to resume training exactly.

Layout (``ranvier.save``, written atomically: an interrupted save leaves the previous file)::

    tensors   "model.<key>"              the model's state dict
              "optimizer.<n>"            the arrays of the optimizer's state (exp_avg, ...)
              "training.<n>"             arrays inside the training state (e.g. the best
                                         weights EarlyStopping keeps)
    metadata  "format": "ranvier.checkpoint", "version": "1", "epoch": "<last finished, 0-based>"
              "optimizer": JSON of the optimizer's state dict, arrays replaced by
                           {"__array__": "optimizer.<n>"}
              "training":  JSON of the rest (fit's History, ranvier's random-generator state,
                           the DataLoader's shuffling state, scheduler and callback states);
                           may be absent for checkpoints written by save_checkpoint alone

JSON keeps floats exactly (shortest round-trip repr) and writes infinities as ``Infinity``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .. import serialization
from .._arrays import is_cuda_array

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ranvier.checkpoint"
_VERSION = "1"


def pack(value, prefix: str, arrays: dict):
    """A JSON-serialisable copy of ``value`` whose arrays are moved into ``arrays``."""
    if isinstance(value, np.ndarray) or is_cuda_array(value):
        name = f"{prefix}.{len(arrays)}"
        arrays[name] = value
        return {"__array__": name}
    if hasattr(value, "data") and type(value).__name__ in ("Tensor", "Parameter"):
        return pack(value.data, prefix, arrays)
    if isinstance(value, dict):
        packed = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"checkpoint: state keys must be strings or ints, got {key!r}")
            packed[str(key)] = pack(item, prefix, arrays)
        return packed
    if isinstance(value, (list, tuple)):
        return [pack(item, prefix, arrays) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint: cannot store a {type(value).__name__} ({value!r})")


def unpack(value, arrays: dict, path: str):
    """Inverse of pack: ``{"__array__": name}`` -> the array from the file."""
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            name = value["__array__"]
            if name not in arrays:
                raise ValueError(f"{path}: the checkpoint refers to a missing tensor {name!r}")
            return arrays[name]
        return {key: unpack(item, arrays, path) for key, item in value.items()}
    if isinstance(value, list):
        return [unpack(item, arrays, path) for item in value]
    return value


def _optimizer_from_json(state: dict) -> dict:
    """JSON turned the state's int keys into strings and tuples into lists: undo both."""
    groups = []
    for group in state["param_groups"]:
        groups.append({key: (tuple(value) if isinstance(value, list) and key != "params" else value)
                       for key, value in group.items()})
    return {"state": {int(index): value for index, value in state["state"].items()},
            "param_groups": groups}


def save_checkpoint(path, model, optimizer=None, *, epoch: int | None = None,
                    training_state: dict | None = None) -> None:
    """Write ``model`` (and ``optimizer``) to one safetensors checkpoint, atomically.

    Args:
        path: the file to write (its directory must exist).
        model: a Module; its state dict is stored under ``"model.<key>"``.
        optimizer: an Optimizer whose state dict is stored too (optional).
        epoch: the last finished epoch (0-based), stored in the metadata.
        training_state: a dict of JSON-able values and arrays (fit's own state).

    The file is also a plain safetensors file: ``ranvier.load(path)`` gives the arrays.
    """
    arrays = {f"model.{key}": value for key, value in model.state_dict().items()}
    metadata = {"format": CHECKPOINT_FORMAT, "version": _VERSION}
    if epoch is not None:
        metadata["epoch"] = str(int(epoch))
    if optimizer is not None:
        metadata["optimizer"] = json.dumps(pack(optimizer.state_dict(), "optimizer", arrays))
    if training_state is not None:
        metadata["training"] = json.dumps(pack(training_state, "training", arrays))
    serialization.save(arrays, path, metadata=metadata)


def load_checkpoint(path, model=None, optimizer=None, *, strict: bool = True) -> dict:
    """Read a checkpoint written by ``save_checkpoint`` or ``fit``'s ModelCheckpoint.

    Args:
        path: the checkpoint file.
        model: if given, its weights are loaded (``load_state_dict(strict=strict)``).
        optimizer: if given, its state is loaded (the file must hold one).

    Returns:
        ``{"epoch": int or None, "model": {key: array}, "optimizer": state dict or None,
        "training": dict or None}``.
    """
    path = os.fspath(path)
    arrays, metadata = serialization.load(path, with_metadata=True)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a ranvier checkpoint (its metadata has no "
                         f"format={CHECKPOINT_FORMAT!r}; a plain weights file loads with "
                         f"model.load_state_dict(ranvier.load(path)))")
    if metadata.get("version") != _VERSION:
        raise ValueError(f"{path}: checkpoint version {metadata.get('version')!r} is not "
                         f"supported (this ranvier reads version {_VERSION})")
    try:
        optimizer_state = (_optimizer_from_json(unpack(json.loads(metadata["optimizer"]), arrays, path))
                           if "optimizer" in metadata else None)
        training = (unpack(json.loads(metadata["training"]), arrays, path)
                    if "training" in metadata else None)
        epoch = int(metadata["epoch"]) if "epoch" in metadata else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: damaged checkpoint metadata ({exc})") from None
    model_state = {key[len("model."):]: value for key, value in arrays.items()
                   if key.startswith("model.")}
    if model is not None:
        model.load_state_dict(model_state, strict=strict)
    if optimizer is not None:
        if optimizer_state is None:
            raise ValueError(f"{path}: the checkpoint holds no optimizer state")
        optimizer.load_state_dict(optimizer_state)
    return {"epoch": epoch, "model": model_state, "optimizer": optimizer_state,
            "training": training}
