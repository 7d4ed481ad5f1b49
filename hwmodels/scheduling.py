"""Longest-processing-time-first list scheduling of CTAs onto SM slots, for many equal jobs.

A fused attention kernel launches one CTA per (Q tile, head, batch) and the GPU hands each to
the first free SM slot. With jobs sorted longest first (FlashAttention-3 and NATTEN order
causal/uneven work that way) the makespan is the classic LPT schedule. Jobs come as a histogram
(duration, multiplicity), often millions of CTAs with a few distinct durations, so equal jobs
are placed in bulk: ``m`` equal jobs of length ``w`` go, one by one, to the least-loaded slot,
which is the same as taking the ``m`` smallest start times ``load_i + k*w`` (k >= 0) over all
slots. Those are the starts below a water level found in closed form on the sorted loads, plus
fewer than one job per slot after it, so the cost is O(slots log slots) per distinct duration,
never O(jobs).
"""
from __future__ import annotations

import numpy as np


def place_equal_jobs(loads: np.ndarray, w: float, m: int) -> np.ndarray:
    """Loads after greedily placing ``m`` jobs of length ``w > 0`` on the least-loaded slots."""
    if m <= 0:
        return loads
    srt = np.sort(loads)  # only the multiset of loads matters to the makespan: keep them sorted
    if m <= len(srt) and srt[m - 1] <= srt[0] + w:
        # each of the m least-loaded slots takes one job: once a slot has one it is no longer
        # below any of the others (the common case of a few CTAs of one duration)
        srt[:m] += w
        return srt
    if srt[-1] <= srt[0] + w:
        # loads within one job of each other: every round of S jobs gives each slot one and
        # keeps their order, so m jobs are m // S rounds plus one more on the m % S least loaded
        rounds, rest = divmod(m, len(srt))
        srt += rounds * w
        srt[:rest] += w
        return srt
    loads = srt
    # Water level T with sum_i max(0, (T - b_i)/w) = m, b_i = L_i - w, solved on the sorted
    # breakpoints. Slot i has n_i(T) = #{k >= 0: L_i + k*w <= T} starts at or below T and
    # n_i <= (T - b_i)/w < n_i + 1 where positive, so the n_i sum to m minus less than the
    # number of slots with b_i <= T; every one of those has its next start in (T, T + w].
    brk = loads - w
    j = np.arange(1, len(brk) + 1)
    level = (w * m + np.cumsum(brk)) / j
    # The level using the j lowest breakpoints clears the j-th exactly while j <= j*, so j* is
    # the last j that does (a tolerance absorbs rounding at ties; the fix-up below is exact).
    tol = 1e-9 * max(w, float(np.abs(brk).max()))
    t = level[np.flatnonzero(level >= brk - tol)[-1]]
    n = np.where(loads <= t, np.floor((t - loads) / w) + 1, 0).astype(np.int64)
    out = loads + n * w
    missing = m - int(n.sum())
    if missing > 0:  # the rest start in (T, T + w]: at most one more per slot, earliest first
        out[np.argsort(out, kind="stable")[:missing]] += w
    elif missing < 0:  # rounding put a start just above T below it: drop the latest ones
        out[np.argsort(np.where(n > 0, out, -np.inf), kind="stable")[missing:]] -= w
    return out


def lpt_makespan(durations: np.ndarray, counts: np.ndarray, slots: int) -> float:
    """Makespan of ``counts[i]`` jobs of ``durations[i]`` seconds on ``slots`` identical
    slots, longest first."""
    loads = np.zeros(int(slots))
    # jobs of equal length are placed in one go (the greedy sequence is the same): CTAs of
    # different tile rows often share a duration
    lengths, where = np.unique(np.asarray(durations, float), return_inverse=True)
    totals = np.bincount(where.ravel(), weights=np.asarray(counts, np.int64), minlength=len(lengths))
    for w, m in zip(lengths[::-1], totals[::-1]):
        if w > 0:
            loads = place_equal_jobs(loads, float(w), int(round(m)))
    return float(loads.max())
