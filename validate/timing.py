"""Timing harness: warm-up, repeats until a time budget, median and IQR.

GPU work is timed with CUDA events around each call (host overhead of launching included, as a
user sees it); CPU work with ``time.perf_counter`` on a fixed thread count.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

WARMUP_CALLS = 3
MIN_REPEATS = 5
MAX_REPEATS = 2000


@dataclass(frozen=True)
class Stats:
    median_s: float
    iqr_s: float
    min_s: float
    repeats: int


def summarise(samples_s: list[float]) -> Stats:
    """Median, interquartile range and minimum of the samples."""
    if not samples_s:
        raise ValueError("no timing samples")
    if len(samples_s) < 4:
        return Stats(statistics.median(samples_s), 0.0, min(samples_s), len(samples_s))
    q1, _, q3 = statistics.quantiles(samples_s, n=4, method="inclusive")
    return Stats(statistics.median(samples_s), q3 - q1, min(samples_s), len(samples_s))


def _cpu_sample(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cuda_sampler():
    import torch

    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def sample(fn: Callable[[], object]) -> float:
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3

    return sample


def measure(fn: Callable[[], object], device: str = "cpu", budget_s: float = 1.0,
            min_repeats: int = MIN_REPEATS, max_repeats: int = MAX_REPEATS) -> Stats:
    """Time ``fn`` after ``WARMUP_CALLS`` calls, repeating until ``budget_s`` of samples (at
    least ``min_repeats``, at most ``max_repeats``)."""
    sample = _cuda_sampler() if device == "cuda" else _cpu_sample
    for _ in range(WARMUP_CALLS):
        sample(fn)
    samples: list[float] = []
    while len(samples) < max_repeats and (len(samples) < min_repeats or sum(samples) < budget_s):
        samples.append(sample(fn))
    return summarise(samples)
