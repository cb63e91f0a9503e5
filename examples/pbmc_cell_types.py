"""Cell types of 700 blood immune cells from their expression of 765 genes (10x PBMC 68k, reduced).

    python examples/pbmc_cell_types.py                     # full run, a few seconds
    python examples/pbmc_cell_types.py --export-csv pbmc.csv
    ranvier train pbmc.csv --target bulk_labels            # the same through the command line

The data ship inside the scanpy package (scanpy/datasets/10x_pbmc68k_reduced.h5ad: 10
labelled cell types in obs['bulk_labels']); they are read with anndata, without importing
scanpy:

    pip install anndata
    pip install --no-deps scanpy          # only for its data file

The cells are split (stratified by type) into training, validation and test parts; the
features are standardised with the training part's statistics; an MLP is trained with
ranvier.train.fit with the validation loss watched by early stopping (best weights kept) and
a checkpoint of the best epoch. The held-out test cells give the accuracy, the macro F1 and
the confusion matrix.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings

import numpy as np

import ranvier
from ranvier import nn
from ranvier.data import Standardize, packaged_file, train_val_test_split
from ranvier.metrics import accuracy_score, confusion_matrix, f1_score
from ranvier.train import EarlyStopping, ModelCheckpoint, fit, predict

DATA_FILE = "scanpy/datasets/10x_pbmc68k_reduced.h5ad"
HOW_TO_GET = ('needs anndata and the data file inside scanpy: pip install anndata; '
              'pip install --no-deps scanpy')


def find_data():
    """The path of the .h5ad file inside an installed scanpy, or None."""
    return packaged_file("scanpy", DATA_FILE)


def load_cells(path=None):
    """(expression (700, 765) float32, labels (700,) int64, class names, gene names, cell ids)."""
    import anndata

    path = path or find_data()
    with warnings.catch_warnings():
        # The file predates anndata's current format (no encoding metadata, graphs in .uns);
        # anndata converts it and warns about each element.
        warnings.simplefilter("ignore")
        adata = anndata.read_h5ad(path)
    matrix = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    names = [str(v) for v in adata.obs["bulk_labels"]]
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    return (matrix.astype(np.float32), labels, classes, [str(g) for g in adata.var_names],
            [str(c) for c in adata.obs_names])


def export_csv(path, x, labels, classes, genes, cells):
    """The table `ranvier train --target bulk_labels` reads: cell id, genes, label."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cell"] + genes + ["bulk_labels"])
        for cell, row, label in zip(cells, x, labels):
            writer.writerow([cell] + [f"{v:.6g}" for v in row] + [classes[label]])


def run(epochs=100, hidden=128, lr=1e-3, seed=0, checkpoint_dir=".", progress=True, data=None):
    """Train and test; returns a dict of the test metrics, the history and the class names."""
    x, y, classes, _, _ = data if data is not None else load_cells()
    ranvier.manual_seed(seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = train_val_test_split(
        x, y, val_size=0.15, test_size=0.2, stratify=y, seed=seed)
    scaler = Standardize().fit(x_train)
    x_train, x_val, x_test = (scaler.transform(a).astype(np.float32) for a in (x_train, x_val, x_test))

    model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(hidden, len(classes)))
    checkpoint = os.path.join(checkpoint_dir, "pbmc_best.safetensors")
    history = fit(model, (x_train, y_train), loss=nn.CrossEntropyLoss(),
                  optimizer=ranvier.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4),
                  epochs=epochs, batch_size=32, validation_data=(x_val, y_val),
                  metrics=["accuracy", "f1"],
                  callbacks=[EarlyStopping(patience=8, restore_best_weights=True),
                             ModelCheckpoint(checkpoint, save_best_only=True)],
                  progress=progress)
    predicted = predict(model, x_test).argmax(axis=1)
    return {"accuracy": accuracy_score(y_test, predicted),
            "macro_f1": f1_score(y_test, predicted, average="macro", zero_division=0),
            "confusion": confusion_matrix(y_test, predicted, labels=list(range(len(classes)))),
            "classes": classes, "history": history, "n_test": len(y_test),
            "checkpoint": checkpoint}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default=".")
    parser.add_argument("--export-csv", metavar="PATH", help="also write the table as CSV")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        import anndata  # noqa: F401
    except ImportError:
        print(f"pbmc_cell_types: {HOW_TO_GET}", file=sys.stderr)
        return 1
    if find_data() is None:
        print(f"pbmc_cell_types: {DATA_FILE} not found; {HOW_TO_GET}", file=sys.stderr)
        return 1
    data = load_cells()
    if args.export_csv:
        export_csv(args.export_csv, *data)
        print(f"wrote {args.export_csv} ({len(data[1])} cells x {len(data[3])} genes + bulk_labels)")
    result = run(epochs=args.epochs, hidden=args.hidden, lr=args.lr, seed=args.seed,
                 checkpoint_dir=args.checkpoint_dir, progress=not args.no_progress, data=data)
    print(f"test accuracy {result['accuracy']:.4f}, macro F1 {result['macro_f1']:.4f} "
          f"on {result['n_test']} held-out cells")
    width = max(len(c) for c in result["classes"])
    print("confusion matrix (rows: true type, columns: predicted, in this order):")
    for name, row in zip(result["classes"], result["confusion"]):
        print(f"  {name:<{width}} " + " ".join(f"{v:3d}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
