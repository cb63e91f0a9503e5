"""The ``ranvier`` command (also ``python -m ranvier``).

    ranvier demo [--epochs 30] [--hidden 64] [--lr 0.001] [--batch-size 32] [--seed 0] [--no-progress]
                 [--device cpu|cuda|cuda:N]

Exit status: 0 on success, 2 for bad arguments, 1 when the device asked for cannot be used
(one line on stderr saying why, e.g. no GPU or no CuPy).
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
    return parser


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
    parser.error(f"unknown command {args.command!r}")  # argparse already rejects these
    return 2


if __name__ == "__main__":
    sys.exit(main())
