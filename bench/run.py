"""Run ranvier's benchmarks and print one table: op, size, ranvier's median, the peer's, ratio.

    python -m bench                      # everything (under a minute on 2 cores)
    python -m bench --quick              # tiny sizes, a few seconds: checks the bench runs
    python -m bench --only matmul        # one section: matmul, linear, activations, softmax, train, conv,
                                         # pool, gpu_matmul (vs cuBLAS), gpu_conv (vs cuDNN), gpu_train
                                         # (vs PyTorch on the GPU); GPU sections skip without a GPU
    python -m bench --markdown           # the table as Markdown, for bench/RESULTS.md
    python -m bench --threads 1          # OMP/BLAS/PyTorch threads (default: the libraries' own)

"speed" is the peer's median time divided by ranvier's: above 1 ranvier is faster.
Run from the repository root, against the installed ranvier (pip install .).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

if __package__ in (None, ""):  # run as `python bench/run.py`: make `import bench` work
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SECTION_NAMES = ("matmul", "linear", "activations", "softmax", "train", "conv", "pool", "gpu_matmul",
                 "gpu_conv", "gpu_train")

# Read by OpenMP (ranvier's kernels), OpenBLAS/MKL (NumPy) when the libraries load.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short timings (a smoke test)")
    parser.add_argument("--only", choices=SECTION_NAMES, action="append", metavar="SECTION",
                        help=f"run only this section (repeatable): {', '.join(SECTION_NAMES)}")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for ranvier (OpenMP), NumPy's BLAS and PyTorch")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    return args


def set_threads(threads: int) -> None:
    """Must run before NumPy, ranvier or PyTorch are imported: they read these once."""
    already = [name for name in ("numpy", "ranvier", "torch") if name in sys.modules]
    if already:
        print(f"warning: --threads set after {', '.join(already)} was imported; it may not apply",
              file=sys.stderr)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _gflops(value) -> str:
    return "" if value is None else f"{value:.1f}"


HEADER = ("section", "op", "size", "ranvier", "peer", "peer time", "speed (peer/ranvier)",
          "ranvier GFLOP/s", "peer GFLOP/s", "note")


def table_rows(rows):
    from .timing import format_seconds

    for row in rows:
        yield (row.section, row.op, row.size, format_seconds(row.ranvier_s), row.peer,
               format_seconds(row.peer_s), _ratio(row.speed_ratio), _gflops(row.gflops(row.ranvier_s)),
               _gflops(row.gflops(row.peer_s)), row.note)


def format_table(rows, markdown: bool) -> str:
    cells = [HEADER, *table_rows(rows)]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(HEADER))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe_run(threads) -> str:
    import numpy as np

    import ranvier

    from .cpu_info import describe

    thread_text = f"{threads} thread(s)" if threads else \
        f"threads: library defaults (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    return (f"{datetime.date.today().isoformat()}  CPU: {describe()}  {thread_text}\n"
            f"ranvier {ranvier.__version__} (CUDA built: {ranvier.cuda.is_built()}), "
            f"numpy {np.__version__}, python {sys.version.split()[0]}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        set_threads(args.threads)

    from .cases import SECTIONS, SectionUnavailable
    from .timing import QUICK, TimerSettings

    try:
        import torch

        if args.threads is not None:
            torch.set_num_threads(args.threads)
    except ImportError:
        pass

    timer = QUICK if args.quick else TimerSettings()
    print(describe_run(args.threads), flush=True)
    rows, unavailable = [], []
    for name in args.only or SECTION_NAMES:
        try:
            rows.extend(SECTIONS[name](args.quick, timer))
        except SectionUnavailable as reason:
            unavailable.append(f"{name}: skipped, {reason}")
    print()
    print(format_table(rows, args.markdown))
    for line in unavailable:
        print(line)
    mismatches = [row for row in rows if row.note.startswith("MISMATCH")]
    if mismatches:
        print(f"{len(mismatches)} row(s) where ranvier and its peer disagree: see the note column",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):  # as a script: run the package's copy, whose imports work
        from bench.run import main as package_main

        sys.exit(package_main())
    sys.exit(main())
