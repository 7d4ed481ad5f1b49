"""Longest-processing-time-first list scheduling of CTAs onto SM slots, for many equal jobs.

A fused attention kernel launches one CTA per (Q tile, head, batch) and the GPU hands each to
the first free SM slot. With jobs sorted longest first (FlashAttention-3 and NATTEN order
causal/uneven work that way) the makespan is the classic LPT schedule. Jobs come as a histogram
(duration, multiplicity), often millions of CTAs with a few distinct durations, so equal jobs
are placed in bulk: ``m`` equal jobs of length ``w`` go, one by one, to the least-loaded slot,
which is the same as taking the ``m`` smallest start times ``load_i + k*w`` (k >= 0) over all
slots. That set is found by bisection on the start time, so the cost is O(slots * log) per
distinct duration, never O(jobs).
"""
from __future__ import annotations

import numpy as np


def _starts_at_most(loads: np.ndarray, w: float, t: float) -> np.ndarray:
    """Per slot, how many jobs of length ``w`` would start at or before time ``t``."""
    return np.where(loads <= t, np.floor((t - loads) / w) + 1, 0).astype(np.int64)


def place_equal_jobs(loads: np.ndarray, w: float, m: int) -> np.ndarray:
    """Loads after greedily placing ``m`` jobs of length ``w > 0`` on the least-loaded slots."""
    if m <= 0:
        return loads
    spread = loads.max() - loads.min()
    if spread <= w:
        # Each job lands on a slot that is then no lower than any other: round-robin by load.
        rounds, rest = divmod(m, len(loads))
        out = loads + rounds * w
        order = np.argsort(out, kind="stable")
        out[order[:rest]] += w
        return out
    lo, hi = loads.min() - w, loads.max() + (m // len(loads) + 1) * w  # count(lo)=0, count(hi)>=m
    for _ in range(200):  # bisection for the m-th smallest start time
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if _starts_at_most(loads, w, mid).sum() >= m:
            hi = mid
        else:
            lo = mid
    n = _starts_at_most(loads, w, lo)  # strictly fewer than m starts up to lo
    out = loads + n * w
    rest = m - int(n.sum())
    order = np.argsort(out, kind="stable")  # the next starts, all at the m-th start time
    out[order[:rest]] += w
    return out


def lpt_makespan(durations: np.ndarray, counts: np.ndarray, slots: int) -> float:
    """Makespan of ``counts[i]`` jobs of ``durations[i]`` seconds on ``slots`` identical
    slots, longest first."""
    loads = np.zeros(int(slots))
    for w, m in sorted(zip(np.asarray(durations, float), np.asarray(counts, np.int64)), reverse=True):
        if w > 0:
            loads = place_equal_jobs(loads, float(w), int(m))
    return float(loads.max())
