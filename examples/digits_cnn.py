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
from ranvier.nn import functional as F


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


def train_epoch(model, optimizer, x, y, batch_size: int, rng: np.random.Generator) -> float:
    """One pass over (x, y) in shuffled mini-batches; returns the mean training loss."""
    model.train()
    order = rng.permutation(len(x))
    total = 0.0
    for start in range(0, len(x), batch_size):
        batch = order[start:start + batch_size]
        loss = F.cross_entropy(model(ranvier.tensor(x[batch])), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(x)


def predict_logits(model, x, batch_size: int = 512) -> np.ndarray:
    model.eval()
    with ranvier.no_grad():
        return np.concatenate([model(ranvier.tensor(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])


def run(epochs: int = 10, train_size: int | None = None, batch_size: int = 32, lr: float = 2e-3,
        seed: int = 0, log=print) -> dict:
    """Train and evaluate; returns {'accuracy', 'train_loss', 'n_train', 'n_test', 'seconds'}."""
    started = time.perf_counter()
    ranvier.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = load_digits_images(seed)
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    model = build_model()
    optimizer = ranvier.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, optimizer, x_train, y_train, batch_size, rng)
        log(f"epoch {epoch:2d}/{epochs}  train loss {loss:.4f}")
    predicted = predict_logits(model, x_test).argmax(axis=1)
    return {"accuracy": float((predicted == y_test).mean()), "train_loss": loss,
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
