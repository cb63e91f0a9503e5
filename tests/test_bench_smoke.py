"""The benchmark runs end to end on tiny sizes (no assertion on times: tests never time)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("matmul", "linear", "activations", "softmax", "train", "conv", "pool", "gpu_matmul", "gpu_conv",
            "gpu_train")


def run_bench(*args):
    return subprocess.run([sys.executable, "-m", "bench", "--quick", "--markdown", "--threads", "1", *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)


def table_rows(stdout: str) -> list[list[str]]:
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    header, rows = lines[0], lines[1:]
    assert header.startswith("| section | op | size | ranvier |")
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in rows]


def test_quick_bench_prints_a_row_per_case():
    completed = run_bench()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = table_rows(completed.stdout)
    sections = {row[0] for row in rows}
    # The activations exist in every build; the other sections once their ops exist.
    assert "activations" in sections
    assert len([row for row in rows if row[0] == "activations"]) == 4
    for row in rows:
        assert row[3] != "-", row  # ranvier was timed
        assert "MISMATCH" not in row[-1], row
    skipped = [line for line in completed.stdout.splitlines() if ": skipped, " in line]
    assert len(sections) + len(skipped) == len(SECTIONS), completed.stdout


@pytest.mark.parametrize("section", [s for s in SECTIONS if s != "activations"])
def test_each_section_runs_or_says_why_not(section):
    completed = run_bench("--only", section)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    if f"{section}: skipped, " not in completed.stdout:
        assert any(row[0] == section for row in table_rows(completed.stdout))


def test_sections_are_the_ones_bench_knows():
    sys.path.insert(0, str(REPO))
    try:
        from bench.run import SECTION_NAMES
    finally:
        sys.path.remove(str(REPO))
    assert tuple(SECTION_NAMES) == SECTIONS


def test_bench_cpu_info_and_timer():
    sys.path.insert(0, str(REPO))
    try:
        from bench.cpu_info import cpu_model, describe, usable_cores
        from bench.timing import QUICK, format_seconds, median_seconds
    finally:
        sys.path.remove(str(REPO))
    assert cpu_model() and usable_cores() >= 1 and str(usable_cores()) in describe()
    calls = []
    assert median_seconds(lambda: calls.append(1), QUICK) >= 0
    assert len(calls) >= QUICK.warmup_calls + QUICK.min_repeats
    assert format_seconds(None) == "-"
    assert format_seconds(1.5e-3) == "1.5 ms" and format_seconds(2.0) == "2 s"
    assert format_seconds(250e-9) == "250 ns" and format_seconds(12.34e-6) == "12.3 us"


def test_bench_run_py_works_as_a_script():
    completed = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "activations"],
                               capture_output=True, text=True, timeout=300, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    assert "relu float32" in completed.stdout
