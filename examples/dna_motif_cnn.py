"""Oct4 or Mafk? A 1-D CNN on one-hot DNA tells the ChIP-seq peaks of two transcription factors apart.

    python examples/dna_motif_cnn.py         # full run: held-out accuracy and ROC AUC
    python examples/dna_motif_cnn.py --epochs 2 --train-size 600

Data: the 200-bp peak sequences that ship inside the ``janggu`` package, used by janggu's own
``classify_fasta.py`` example (which labels them the same way):

    janggu/resources/sample.fa        3,897 Oct4 peaks   (training, label 1)
    janggu/resources/sample2.fa       3,900 Mafk peaks   (training, label 0)
    janggu/resources/sample_test.fa     100 Oct4 peaks   (held out, label 1)
    janggu/resources/sample2_test.fa    100 Mafk peaks   (held out, label 0)

The files are found through the package's metadata and read with ``ranvier.data.read_fasta``;
janggu is never imported (its dependencies pin TensorFlow 1/2-era packages). Install with

    pip install --no-deps janggu

Model: convolution filters scan the one-hot sequence (N, 4, 200) for motifs; max pooling keeps
where they match best. Reverse-complement augmentation: a factor binds double-stranded DNA, so
each training sequence is replaced by its reverse complement with probability 1/2 in every epoch,
and held-out predictions average both strands.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import ranvier
from ranvier import nn
from ranvier.data import (DataLoader, TensorDataset, one_hot_dna, packaged_file, read_fasta,
                          reverse_complement_one_hot)
from ranvier.metrics import roc_auc_score
from ranvier.ops import softmax
from ranvier.train import fit, predict

FILES = {  # split -> (Oct4 file, Mafk file)
    "train": ("janggu/resources/sample.fa", "janggu/resources/sample2.fa"),
    "test": ("janggu/resources/sample_test.fa", "janggu/resources/sample2_test.fa"),
}
HOW_TO_GET_THE_DATA = ("This example needs the Oct4 and Mafk peak sequences that ship inside the "
                       "janggu package. Install it without its (TensorFlow-era) dependencies:\n"
                       "    pip install --no-deps janggu")
SEQUENCE_LENGTH = 200


class DataMissing(RuntimeError):
    """janggu's FASTA files are not installed."""


def find_data():
    """{'train': (oct4 path, mafk path), 'test': (...)}, or None when janggu is not installed."""
    paths = {split: tuple(packaged_file("janggu", name) for name in names)
             for split, names in FILES.items()}
    if any(path is None for pair in paths.values() for path in pair):
        return None
    return paths


def load_sequences(train_size: int | None = None, seed: int = 0):
    """(x_train, y_train, x_test, y_test): one-hot (N, 4, 200) float32, labels int64 with
    1 = Oct4, 0 = Mafk. `train_size` keeps a random, class-balanced subset of the training set."""
    paths = find_data()
    if paths is None:
        raise DataMissing(f"janggu's FASTA files were not found.\n{HOW_TO_GET_THE_DATA}")
    arrays = []
    for split in ("train", "test"):
        oct4, mafk = (read_fasta(path) for path in paths[split])
        x = one_hot_dna(oct4 + mafk, length=SEQUENCE_LENGTH)
        y = np.r_[np.ones(len(oct4), np.int64), np.zeros(len(mafk), np.int64)]
        arrays += [x, y]
    x_train, y_train, x_test, y_test = arrays
    if train_size is not None:
        rng = np.random.default_rng(seed)
        keep = np.concatenate([rng.permutation(np.flatnonzero(y_train == label))[:train_size // 2]
                               for label in (0, 1)])
        x_train, y_train = x_train[keep], y_train[keep]
    return x_train, y_train, x_test, y_test


def random_strand(x, y):
    """A batch (N, 4, L) with each sequence replaced by its reverse complement with probability
    1/2 (a DataLoader transform). Decisions come from ranvier's generator, so manual_seed makes
    a run reproducible."""
    flip = ranvier.random.default_generator.numpy.random(len(x)) < 0.5
    x = x.copy()
    x[flip] = reverse_complement_one_hot(x[flip])
    return x, y


def build_model(filters: int = 32, motif_length: int = 15) -> nn.Module:
    """(N, 4, 200) -> (N, 2) logits."""
    return nn.Sequential(
        nn.Conv1d(4, filters, kernel_size=motif_length, padding=motif_length // 2),  # (N, F, 200)
        nn.BatchNorm1d(filters),
        nn.ReLU(),
        nn.MaxPool1d(4),                                                      # (N, F, 50)
        nn.Conv1d(filters, filters, kernel_size=5, padding=2),                # (N, F, 50)
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),                                              # (N, F, 1)
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(filters, 2),
    )


def oct4_probability(model, x, batch_size: int = 500) -> np.ndarray:
    """P(Oct4) averaged over both strands."""
    def probability(inputs):
        return softmax(predict(model, inputs, batch_size=batch_size), axis=1)[:, 1]
    return (probability(x) + probability(reverse_complement_one_hot(x))) / 2


def run(epochs: int = 10, train_size: int | None = None, batch_size: int = 64, lr: float = 3e-3,
        seed: int = 0, progress=True) -> dict:
    """Train with ranvier.train.fit on randomly stranded sequences and evaluate on the held-out
    files; returns accuracy, roc_auc and sizes."""
    started = time.perf_counter()
    ranvier.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_sequences(train_size, seed)
    model = build_model()
    batches = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True,
                         transform=random_strand)
    history = fit(model, batches, loss=nn.CrossEntropyLoss(),
                  optimizer=ranvier.optim.Adam(model.parameters(), lr=lr), epochs=epochs,
                  progress=progress)
    probability = oct4_probability(model, x_test)
    return {
        "accuracy": float(((probability > 0.5) == (y_test == 1)).mean()),
        "roc_auc": roc_auc_score(y_test, probability),
        "train_loss": history.history["loss"][-1], "n_train": len(y_train), "n_test": len(y_test),
        "seconds": time.perf_counter() - started,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on a class-balanced random subset of this many sequences")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        metrics = run(epochs=args.epochs, train_size=args.train_size, seed=args.seed)
    except DataMissing as error:
        print(f"dna_motif_cnn: {error}", file=sys.stderr)
        return 1
    print(f"held-out accuracy {metrics['accuracy']:.4f}, ROC AUC {metrics['roc_auc']:.4f} on "
          f"{metrics['n_test']} peaks (trained on {metrics['n_train']}) in "
          f"{metrics['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
