"""The ``ranvier`` command (also ``python -m ranvier``).

    ranvier demo [--epochs 30] [--hidden 64] [--lr 0.001] [--batch-size 32] [--seed 0] [--no-progress]
                 [--device cpu|cuda|cuda:N]
    ranvier train TABLE --target COLUMN [--test TABLE] [--hidden 256,128] [--epochs 100] [--lr 0.001]
                  [--task auto|classification|regression] [--device cpu|cuda|cuda:N] [--out DIR] ...
    ranvier predict DIR TABLE [--out predictions.csv]

Exit status: 0 on success, 2 for bad arguments or a user's mistake in a table command, 1 when
the device asked for cannot be used (one line on stderr saying why, e.g. no GPU or no CuPy).
"""

from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _device(text: str) -> str:
    from ._arrays import parse_device

    try:
        return parse_device(text, "--device")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--device: ")) from None


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="ranvier", description="ranvier: deep learning for biologists on hand-written kernels.")
    parser.add_argument("--version", action="version", version=f"ranvier {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="train a small network on breast-tumour measurements (a few seconds)",
        description="Train a 30-HIDDEN-2 perceptron to tell malignant from benign breast "
                    "tumours (scikit-learn's Wisconsin data, 569 tumours x 30 features) and "
                    "report held-out accuracy and ROC AUC.")
    demo.add_argument("--epochs", type=_positive_int, default=30, help="passes over the training data (default 30)")
    demo.add_argument("--hidden", type=_positive_int, default=64, help="hidden-layer width (default 64)")
    demo.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default 0.001)")
    demo.add_argument("--batch-size", type=_positive_int, default=32, help="mini-batch size (default 32)")
    demo.add_argument("--seed", type=_non_negative_int, default=0,
                      help="seed for the split, initial weights and shuffling (default 0)")
    demo.add_argument("--no-progress", action="store_true",
                      help="plain lines instead of progress bars, even on a terminal")
    demo.add_argument("--device", type=_device, default="cpu",
                      help="where to train: cpu (default), cuda or cuda:N (needs a GPU and CuPy)")
    _add_table_commands(commands)
    return parser


# --- training workflow (issue 6): ranvier train / ranvier predict on expression tables ---

def _hidden_sizes(text: str) -> tuple:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated layer widths like 256,128, "
                                         f"got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return sizes


def _fraction_or_count(text: str) -> float:
    value = float(text)
    if not (0 < value < 1 or (value >= 1 and value == int(value))):
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1) or a number of samples, "
                                         f"got {text}")
    return value if value < 1 else int(value)


def _add_table_commands(commands) -> None:
    train = commands.add_parser(
        "train", help="train an MLP on a CSV/TSV table (samples x features, one target column)",
        description="Train a multilayer perceptron on a table of samples (rows) x features "
                    "(columns): standardised features, a stratified validation split, early "
                    "stopping; prints the metrics and writes the model directory.")
    train.add_argument("table", metavar="TABLE", help="CSV or TSV file with a header line")
    train.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    train.add_argument("--test", metavar="TABLE", help="a held-out table to report metrics on")
    train.add_argument("--hidden", type=_hidden_sizes, default=(256, 128),
                       help="hidden-layer widths (default 256,128)")
    train.add_argument("--epochs", type=_positive_int, default=100, help="most epochs (default 100)")
    train.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default 0.001)")
    train.add_argument("--batch-size", type=_positive_int, default=32, help="mini-batch size (default 32)")
    train.add_argument("--patience", type=_non_negative_int, default=10,
                       help="epochs without validation improvement before stopping (default 10)")
    train.add_argument("--val-size", type=_fraction_or_count, default=0.2,
                       help="validation fraction or sample count (default 0.2)")
    train.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                       help="default: classification for labels or few integer values")
    train.add_argument("--id-column", metavar="COLUMN", help="sample-id column (not a feature)")
    train.add_argument("--impute", action="store_true",
                       help="fill missing values with the training column means instead of refusing")
    train.add_argument("--device", type=_device, default="cpu",
                       help="where to train: cpu (default), cuda or cuda:N (needs a GPU and CuPy)")
    train.add_argument("--out", metavar="DIR", help="model directory (default TABLE-model)")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    train.add_argument("--no-progress", action="store_true", help="no per-epoch progress")

    predict = commands.add_parser(
        "predict", help="apply a model from 'ranvier train' to a table",
        description="Predict the class and per-class probabilities (or the value) of every row.")
    predict.add_argument("model_dir", metavar="DIR", help="directory written by 'ranvier train'")
    predict.add_argument("table", metavar="TABLE", help="CSV or TSV with the model's feature columns")
    predict.add_argument("--out", default="predictions.csv", help="output CSV (default predictions.csv)")
    predict.add_argument("--impute", action="store_true",
                         help="fill missing values with the training column means")


def _run_table_command(args) -> int:
    from .train.tabular import UserError, predict_table, train_table

    try:
        if args.command == "train":
            train_table(args.table, target=args.target, test_path=args.test, hidden=args.hidden,
                        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        val_size=args.val_size, patience=args.patience, task=args.task,
                        id_column=args.id_column, impute=args.impute, device=args.device,
                        out=args.out, seed=args.seed, progress=not args.no_progress)
        else:
            predict_table(args.model_dir, args.table, out=args.out, impute=args.impute)
    except UserError as exc:
        print(f"ranvier {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        from ._arrays import resolve_device
        from .demo import run_demo

        try:  # before loading the data: a missing GPU is one clear line, not a traceback
            device = resolve_device(args.device, "demo")
        except RuntimeError as exc:
            print(f"ranvier {exc}", file=sys.stderr)
            return 1
        run_demo(epochs=args.epochs, hidden=args.hidden, lr=args.lr, batch_size=args.batch_size,
                 seed=args.seed, progress=False if args.no_progress else None, device=device)
        return 0
    if args.command in ("train", "predict"):
        return _run_table_command(args)
    parser.error(f"unknown command {args.command!r}")  # argparse already rejects these
    return 2


if __name__ == "__main__":
    sys.exit(main())
