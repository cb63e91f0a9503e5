"""A small CNN on the 8x8 handwritten digits bundled with scikit-learn (1,797 images, 10 classes).

    python examples/digits_cnn.py            # full run: held-out accuracy >= 0.97
    python examples/digits_cnn.py --epochs 3 --train-size 300

A quarter of the images (stratified by digit) is held out and never seen in training; the
accuracy reported is on that held-out quarter. Needs only scikit-learn, a ranvier dependency.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import ranvier
from ranvier import nn
from ranvier.train import fit, predict


def load_digits_images(seed: int = 0):
    """(x_train, y_train, x_test, y_test): images (N, 1, 8, 8) float32 in [0, 1], labels int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]   # pixel values 0..16
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, stratify=labels, random_state=seed)
    return x_train, y_train, x_test, y_test


def build_model() -> nn.Module:
    """(N, 1, 8, 8) -> (N, 10) logits."""
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3, padding=1),       # (N, 32, 8, 8)
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, kernel_size=3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),                                  # (N, 32, 4, 4)
        nn.Conv2d(32, 64, kernel_size=3, padding=1),      # (N, 64, 4, 4)
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),                                  # (N, 64, 2, 2)
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(64 * 2 * 2, 10),
    )


def run(epochs: int = 10, train_size: int | None = None, batch_size: int = 32, lr: float = 2e-3,
        seed: int = 0, progress=True) -> dict:
    """Train with ranvier.train.fit and evaluate on the held-out quarter; returns
    {'accuracy', 'train_loss', 'n_train', 'n_test', 'seconds'}."""
    started = time.perf_counter()
    ranvier.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_images(seed)
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    model = build_model()
    history = fit(model, (x_train, y_train), loss=nn.CrossEntropyLoss(),
                  optimizer=ranvier.optim.Adam(model.parameters(), lr=lr), epochs=epochs,
                  batch_size=batch_size, progress=progress)
    predicted = predict(model, x_test, batch_size=512).argmax(axis=1)
    return {"accuracy": float((predicted == y_test).mean()), "train_loss": history.history["loss"][-1],
            "n_train": len(x_train), "n_test": len(x_test),
            "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N training images only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    metrics = run(epochs=args.epochs, train_size=args.train_size, seed=args.seed)
    print(f"held-out accuracy {metrics['accuracy']:.4f} on {metrics['n_test']} images "
          f"(trained on {metrics['n_train']}) in {metrics['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
