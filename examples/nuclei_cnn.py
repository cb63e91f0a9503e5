"""Nucleus versus background: a 2-D CNN on patches of a fluorescence microscopy image.

    python examples/nuclei_cnn.py            # full run: held-out accuracy and ROC AUC
    python examples/nuclei_cnn.py --epochs 2 --patches-per-class 200

Data: the 512x512 fluorescence image of stained nuclei and its nucleus label mask that ship
inside the ``stardist`` package (``stardist/data/images/img2d.tif`` and ``mask2d.tif``). They are
found through the package's metadata and read with tifffile; stardist itself is never imported
(it would pull in TensorFlow). Install the files with

    pip install tifffile
    pip install --no-deps stardist

Task: a 16x16 patch is "nucleus" when its centre pixel (row 8, column 8) lies inside a labelled
nucleus, "background" otherwise. Patches are drawn balanced between the two classes. The image
is split by rows: training patches have their centre in rows 0..375, held-out patches in rows
392..511, so that no held-out patch shares a pixel with a training patch. Intensities are scaled
with the 1st and 99.8th percentiles of the training rows.

As a yardstick the example also reports the ROC AUC of the centre pixel's raw intensity (a
brightness threshold): nuclei are brighter than the background, so that alone scores high,
and the CNN should at least match it.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import ranvier
from ranvier import nn
from ranvier.data import (DataLoader, TensorDataset, packaged_file, random_horizontal_flip,
                          random_vertical_flip)
from ranvier.metrics import roc_auc_score
from ranvier.ops import softmax
from ranvier.train import fit, predict

IMAGE = "stardist/data/images/img2d.tif"
MASK = "stardist/data/images/mask2d.tif"
HOW_TO_GET_THE_DATA = ("This example needs the fluorescence image and nucleus mask that ship "
                       "inside the stardist package, read with tifffile. Install them with:\n"
                       "    pip install tifffile\n"
                       "    pip install --no-deps stardist")

PATCH = 16
TRAIN_ROWS = (0, 376)     # patch centres, [start, stop)
TEST_ROWS = (392, 512)    # 16 rows apart from the training rows: no shared pixels


class DataMissing(RuntimeError):
    """The stardist image files or tifffile are not installed."""


def find_data():
    """(image path, mask path), or None when stardist's files are not installed."""
    image, mask = packaged_file("stardist", IMAGE), packaged_file("stardist", MASK)
    return (image, mask) if image is not None and mask is not None else None


def read_image_and_mask():
    """The (512, 512) fluorescence image (float32) and its label mask (0 = background)."""
    paths = find_data()
    if paths is None:
        raise DataMissing(f"stardist's image files were not found.\n{HOW_TO_GET_THE_DATA}")
    try:
        import tifffile
    except ImportError:
        raise DataMissing(f"tifffile is not installed.\n{HOW_TO_GET_THE_DATA}") from None
    image = tifffile.imread(paths[0]).astype(np.float32)
    mask = tifffile.imread(paths[1])
    if image.shape != mask.shape or image.ndim != 2:
        raise ValueError(f"expected a 2-D image and mask of one shape, got {image.shape} and "
                         f"{mask.shape}")
    return image, mask


def sample_centres(mask, rows, per_class: int, rng: np.random.Generator):
    """Pixel centres (n, 2) with their labels (n,): `per_class` nucleus and background pixels
    drawn without replacement from rows [rows[0], rows[1])."""
    region = np.zeros(mask.shape, dtype=bool)
    region[rows[0]:rows[1]] = True
    centres, labels = [], []
    for label, pixels in ((1, region & (mask > 0)), (0, region & (mask == 0))):
        candidates = np.argwhere(pixels)
        if len(candidates) < per_class:
            raise ValueError(f"only {len(candidates)} pixels of class {label} in rows {rows}, "
                             f"asked for {per_class}")
        centres.append(candidates[rng.choice(len(candidates), per_class, replace=False)])
        labels.append(np.full(per_class, label, dtype=np.int64))
    return np.concatenate(centres), np.concatenate(labels)


def cut_patches(image, centres, size: int = PATCH):
    """Patches (n, 1, size, size) whose pixel (size // 2, size // 2) is each centre; the image
    is mirrored at its borders so that every pixel can be a centre."""
    half = size // 2
    padded = np.pad(image, ((half, size - half), (half, size - half)), mode="reflect")
    offsets = np.arange(size)
    rows = centres[:, 0, None] + offsets                     # (n, size) in padded coordinates
    cols = centres[:, 1, None] + offsets
    return padded[rows[:, :, None], cols[:, None, :]][:, None, :, :]


def load_patches(per_class_train: int = 2000, per_class_test: int = 500, seed: int = 0):
    """Training and held-out patches: dict with x_train (n, 1, 16, 16) float32, y_train (n,)
    int64, x_test, y_test, and centre_intensity_test (the raw centre pixels, for the yardstick)."""
    image, mask = read_image_and_mask()
    rng = np.random.default_rng(seed)
    train_centres, y_train = sample_centres(mask, TRAIN_ROWS, per_class_train, rng)
    test_centres, y_test = sample_centres(mask, TEST_ROWS, per_class_test, rng)
    low, high = np.percentile(image[TRAIN_ROWS[0]:TRAIN_ROWS[1]], [1.0, 99.8])
    scaled = ((image - low) / (high - low)).astype(np.float32)
    return {
        "x_train": cut_patches(scaled, train_centres), "y_train": y_train,
        "x_test": cut_patches(scaled, test_centres), "y_test": y_test,
        "centre_intensity_test": image[test_centres[:, 0], test_centres[:, 1]],
    }


def augment(x, y):
    """Random horizontal and vertical flips per patch: a nucleus is a nucleus either way.
    Decisions come from ranvier's generator, so manual_seed makes a run reproducible."""
    return random_vertical_flip(random_horizontal_flip(x)), y


def build_model() -> nn.Module:
    """(N, 1, 16, 16) -> (N, 2) logits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),       # (N, 16, 16, 16)
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),                                  # (N, 16, 8, 8)
        nn.Conv2d(16, 32, kernel_size=3, padding=1),      # (N, 32, 8, 8)
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),                                  # (N, 32, 4, 4)
        nn.Conv2d(32, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),                          # (N, 32, 1, 1)
        nn.Flatten(),
        nn.Linear(32, 2),
    )


def run(epochs: int = 8, patches_per_class: int = 2000, test_patches_per_class: int = 500,
        batch_size: int = 64, lr: float = 3e-3, seed: int = 0, progress=True) -> dict:
    """Train with ranvier.train.fit on flipped patches and evaluate on the held-out rows; returns
    accuracy, roc_auc, the intensity yardstick and sizes."""
    started = time.perf_counter()
    ranvier.manual_seed(seed)
    data = load_patches(patches_per_class, test_patches_per_class, seed)
    model = build_model()
    batches = DataLoader(TensorDataset(data["x_train"], data["y_train"]), batch_size=batch_size,
                         shuffle=True, transform=augment)
    history = fit(model, batches, loss=nn.CrossEntropyLoss(),
                  optimizer=ranvier.optim.Adam(model.parameters(), lr=lr), epochs=epochs,
                  progress=progress)
    probability = softmax(predict(model, data["x_test"], batch_size=500), axis=1)[:, 1]
    y_test = data["y_test"]
    return {
        "accuracy": float(((probability > 0.5) == (y_test == 1)).mean()),
        "roc_auc": roc_auc_score(y_test, probability),
        "intensity_roc_auc": roc_auc_score(y_test, data["centre_intensity_test"]),
        "train_loss": history.history["loss"][-1], "n_train": len(data["y_train"]),
        "n_test": len(y_test), "seconds": time.perf_counter() - started,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patches-per-class", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        metrics = run(epochs=args.epochs, patches_per_class=args.patches_per_class,
                      seed=args.seed)
    except DataMissing as error:
        print(f"nuclei_cnn: {error}", file=sys.stderr)
        return 1
    print(f"held-out accuracy {metrics['accuracy']:.4f}, ROC AUC {metrics['roc_auc']:.4f} on "
          f"{metrics['n_test']} patches (centre-pixel intensity alone: ROC AUC "
          f"{metrics['intensity_roc_auc']:.4f}); trained on {metrics['n_train']} patches in "
          f"{metrics['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
