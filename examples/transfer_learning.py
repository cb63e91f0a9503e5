"""Transfer learning on the 8x8 digits bundled with scikit-learn: pre-train on 0-4, fine-tune on 5-9.

    python examples/transfer_learning.py                     # default: 100 training images of 5-9
    python examples/transfer_learning.py --few-shot 50 --epochs 10

1. Pre-train a small CNN (a convolutional body + a linear head) on all digits 0-4 and save its
   weights with ``ranvier.save``.
2. Build a model with the same body and a NEW head for digits 5-9, load the saved weights with
   ``load_state_dict(strict=False)``: the body's weights load, and the call reports the old head's
   keys as unexpected and the new head's as missing.
3. Freeze the body (``ranvier.nn.utils.freeze``) and train the head alone with ``fit`` (validation
   data, EarlyStopping) on a small slice of 5-9.
4. Unfreeze and fine-tune everything with two optimizer parameter groups: a small learning rate
   for the body, a larger one for the head.
5. Compare with the same network trained from scratch on the same small slice.

The held-out images of 5-9 (a stratified quarter) are never used in training or validation.
Needs only scikit-learn, a ranvier dependency.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import ranvier
from ranvier import nn
from ranvier.nn.utils import freeze, unfreeze
from ranvier.train import EarlyStopping, fit, predict


def load_digit_tasks(seed: int = 0):
    """The two tasks, images (N, 1, 8, 8) float32 in [0, 1], labels int64 in 0..4.

    Returns {'source': (x, y) all digits 0-4 (labels = digit),
             'target_train', 'target_val', 'target_test': (x, y) digits 5-9 (labels = digit - 5)}:
    a stratified quarter of 5-9 held out for test, another fifth of the rest for validation.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]   # pixel values 0..16
    labels = digits.target.astype(np.int64)
    source = labels < 5
    x_target, y_target = images[~source], labels[~source] - 5
    x_rest, x_test, y_rest, y_test = train_test_split(
        x_target, y_target, test_size=0.25, stratify=y_target, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, stratify=y_rest, random_state=seed)
    return {"source": (images[source], labels[source]), "target_train": (x_train, y_train),
            "target_val": (x_val, y_val), "target_test": (x_test, y_test)}


def build_body() -> nn.Module:
    """(N, 1, 8, 8) -> (N, 64) features. No batch norm or dropout, so a frozen body is fixed."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),       # (N, 16, 8, 8)
        nn.ReLU(),
        nn.MaxPool2d(2),                                  # (N, 16, 4, 4)
        nn.Conv2d(16, 32, kernel_size=3, padding=1),      # (N, 32, 4, 4)
        nn.ReLU(),
        nn.MaxPool2d(2),                                  # (N, 32, 2, 2)
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64),
        nn.ReLU(),
    )


class DigitsNet(nn.Module):
    """A shared body and one task's head, registered under the task's name (``head_0to4``,
    ``head_5to9``) so that a state dict says which task its head was trained for."""

    def __init__(self, task: str, n_classes: int = 5):
        super().__init__()
        self.body = build_body()
        self.head_name = f"head_{task}"
        setattr(self, self.head_name, nn.Linear(64, n_classes))

    @property
    def head(self) -> nn.Module:
        return getattr(self, self.head_name)

    def forward(self, x):
        return self.head(self.body(x))


def accuracy(model, x, y) -> float:
    return float((predict(model, x, batch_size=256).argmax(axis=1) == y).mean())


def snapshot(module) -> dict:
    """Copies of a module's arrays, to compare exactly later."""
    return {key: np.array(value, copy=True) for key, value in module.state_dict().items()}


def run(pretrain_epochs: int = 8, head_epochs: int = 30, finetune_epochs: int = 20,
        few_shot: int = 100, body_lr: float = 1e-3, head_lr: float = 1e-2, patience: int = 5,
        seed: int = 0,
        weights_path=None, log=print) -> dict:
    """Run all five steps; returns the accuracies on the held-out 5-9 images and what the test
    of this example checks (the keys load_state_dict reported, snapshots of body and head)."""
    started = time.perf_counter()
    tasks = load_digit_tasks(seed)
    x_train, y_train = (a[:few_shot] for a in tasks["target_train"])
    validation = tasks["target_val"]
    x_test, y_test = tasks["target_test"]
    loss = nn.CrossEntropyLoss()

    def early_stopping():
        return EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)

    # 1. Pre-train on every image of 0-4 and save the weights.
    ranvier.manual_seed(seed)
    pretrained = DigitsNet("0to4")
    fit(pretrained, tasks["source"], loss=loss, epochs=pretrain_epochs, seed=seed,
        optimizer=ranvier.optim.Adam(pretrained.parameters(), lr=2e-3), progress=False)
    log(f"pre-trained on {len(tasks['source'][0])} images of 0-4 "
        f"(training accuracy {accuracy(pretrained, *tasks['source']):.3f})")
    with tempfile.TemporaryDirectory() as scratch:
        path = weights_path or os.path.join(scratch, "digits_0to4.safetensors")
        ranvier.save(pretrained.state_dict(), path)
        saved = ranvier.load(path)

    # 2. Same body, a new head for 5-9; the saved head is not this model's.
    ranvier.manual_seed(seed + 1)
    model = DigitsNet("5to9")
    missing, unexpected = model.load_state_dict(saved, strict=False)
    log(f"load_state_dict(strict=False): missing {list(missing)}, unexpected {list(unexpected)}")
    accuracy_loaded = accuracy(model, x_test, y_test)

    # 3. Frozen body, train the head.
    freeze(model.body)
    body_before, head_before = snapshot(model.body), snapshot(model.head)
    trainable = [p for p in model.parameters() if p.requires_grad]
    history_head = fit(model, (x_train, y_train), loss=loss, epochs=head_epochs, seed=seed,
                       optimizer=ranvier.optim.Adam(trainable, lr=head_lr), batch_size=16,
                       validation_data=validation, callbacks=[early_stopping()], progress=False)
    body_after_head, head_after_head = snapshot(model.body), snapshot(model.head)
    accuracy_head = accuracy(model, x_test, y_test)
    log(f"head only ({len(history_head.epoch)} epochs, body frozen): accuracy {accuracy_head:.3f}")

    # 4. Unfreeze; fine-tune everything, the body gently.
    unfreeze(model.body)
    optimizer = ranvier.optim.Adam([
        {"params": list(model.body.parameters()), "lr": body_lr},
        {"params": list(model.head.parameters()), "lr": head_lr},
    ])
    history_fine = fit(model, (x_train, y_train), loss=loss, epochs=finetune_epochs, seed=seed,
                       optimizer=optimizer, batch_size=16, validation_data=validation,
                       callbacks=[early_stopping()], progress=False)
    accuracy_fine = accuracy(model, x_test, y_test)
    log(f"fine-tuned ({len(history_fine.epoch)} epochs, body lr {body_lr:g}, head lr {head_lr:g}): "
        f"accuracy {accuracy_fine:.3f}")

    # 5. The same network from scratch on the same slice, same budget of epochs.
    ranvier.manual_seed(seed + 1)
    scratch_model = DigitsNet("5to9")
    history_scratch = fit(scratch_model, (x_train, y_train), loss=loss,
                          epochs=head_epochs + finetune_epochs, seed=seed, batch_size=16,
                          optimizer=ranvier.optim.Adam(scratch_model.parameters(), lr=head_lr),
                          validation_data=validation, callbacks=[early_stopping()], progress=False)
    accuracy_scratch = accuracy(scratch_model, x_test, y_test)
    log(f"from scratch ({len(history_scratch.epoch)} epochs): accuracy {accuracy_scratch:.3f}")

    return {"accuracy_loaded": accuracy_loaded, "accuracy_head": accuracy_head,
            "accuracy_finetuned": accuracy_fine, "accuracy_scratch": accuracy_scratch,
            "missing_keys": list(missing), "unexpected_keys": list(unexpected),
            "head_keys": {"pretrained": [f"head_0to4.{k}" for k in pretrained.head.state_dict()],
                          "new": [f"head_5to9.{k}" for k in model.head.state_dict()]},
            "body_before": body_before, "body_after_head": body_after_head,
            "head_before": head_before, "head_after_head": head_after_head,
            "n_train": len(x_train), "n_val": len(validation[0]), "n_test": len(x_test),
            "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30,
                        help="most epochs for the head, for fine-tuning (each with early stopping)")
    parser.add_argument("--few-shot", type=int, default=100,
                        help="training images of 5-9 (default 100)")
    parser.add_argument("--save", default=None, help="keep the pre-trained weights in this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    metrics = run(pretrain_epochs=args.pretrain_epochs, head_epochs=args.epochs,
                  finetune_epochs=args.epochs, few_shot=args.few_shot, seed=args.seed,
                  weights_path=args.save)
    print(f"held-out accuracy on {metrics['n_test']} images of 5-9 (trained on "
          f"{metrics['n_train']}): transferred {metrics['accuracy_finetuned']:.3f}, "
          f"from scratch {metrics['accuracy_scratch']:.3f} ({metrics['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
