"""A benchmark timer: warm up, then the median of repeated measurements.

Fast calls are grouped into samples of several calls each, so that one sample lasts long
enough (``min_sample_s``) for the clock's resolution and overhead not to matter; samples
are taken until both ``min_repeats`` samples and ``min_total_s`` seconds are reached (or
``max_repeats`` samples). The median per-call time of the samples is reported, which is
robust to the odd sample slowed down by another process.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class TimerSettings:
    warmup_calls: int = 2
    min_sample_s: float = 2e-3
    min_repeats: int = 5
    max_repeats: int = 200
    min_total_s: float = 0.3


QUICK = TimerSettings(warmup_calls=1, min_sample_s=1e-4, min_repeats=3, max_repeats=20, min_total_s=0.005)


def median_seconds(fn, settings: TimerSettings = TimerSettings()) -> float:
    """Median wall-clock seconds of one call of ``fn()`` (see the module docstring)."""
    for _ in range(settings.warmup_calls):
        fn()
    # Calls per sample: double until one sample lasts min_sample_s.
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= settings.min_sample_s or calls >= 1 << 20:
            break
        calls *= 2
    samples = [elapsed / calls]
    total = elapsed
    while len(samples) < settings.max_repeats and (
            len(samples) < settings.min_repeats or total < settings.min_total_s):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        samples.append(elapsed / calls)
        total += elapsed
    return statistics.median(samples)


def format_seconds(seconds: float | None) -> str:
    """'812 ns', '12.3 us', '4.56 ms', '1.23 s'; '-' for None."""
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{seconds / 1e-9:.0f} ns"
