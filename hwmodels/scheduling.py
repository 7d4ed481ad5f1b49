"""Longest-processing-time-first list scheduling of CTAs onto SM slots, for many equal jobs.

A fused attention kernel launches one CTA per (Q tile, head, batch) and the GPU hands each to
the first free SM slot. With jobs sorted longest first (FlashAttention-3 and NATTEN order
causal/uneven work that way) the makespan is the classic LPT schedule. Jobs come as a histogram
(duration, multiplicity), often millions of CTAs with a few distinct durations, so equal jobs
are placed in bulk: ``m`` equal jobs of length ``w`` go, one by one, to the least-loaded slot,
which is the same as taking the ``m`` smallest start times ``load_i + k*w`` (k >= 0) over all
slots. Those are the starts below a water level found in closed form on the sorted loads, plus
fewer than one job per slot after it.

Only the multiset of slot loads matters, and slots that start equal stay in few groups (a
placement splits a group at most in two), so loads are kept as a sorted histogram of (load,
slots): the cost is O(groups) per distinct duration, never O(jobs) nor O(slots).
"""
from __future__ import annotations

import math

import numpy as np

Loads = list[list[float]]  # [[load, slots], ...], loads ascending and distinct


def _give_one(levels: Loads, m: int, w: float) -> list[tuple[float, int]]:
    """One job each to the ``m`` least-loaded slots: (load, slots) pieces, unsorted."""
    out = []
    for load, slots in levels:
        take = min(slots, m)
        if take:
            out.append((load + w, take))
        if slots > take:
            out.append((load, slots - take))
        m -= take
    return out


def _nth_load(levels: Loads, m: int) -> float:
    """The m-th smallest slot load (1-based)."""
    seen = 0
    for load, slots in levels:
        seen += slots
        if seen >= m:
            return load
    return levels[-1][0]


def _water_level(levels: Loads, w: float, m: int) -> float:
    """T with sum over slots of max(0, (T - (L_i - w)) / w) = m, on the sorted groups: the level
    using the j lowest breakpoints clears the j-th exactly while j <= j*; within a group that
    test has one sign, so j* ends a group (a tolerance absorbs rounding at ties; the caller's
    fix-up is exact)."""
    tol = 1e-9 * max(w, abs(levels[0][0] - w), abs(levels[-1][0] - w))
    total, count, best = w * m, 0, None
    for load, slots in levels:
        total += slots * (load - w)
        count += slots
        level = total / count
        if level >= load - w - tol:
            best = level
    return best


def _spread(levels: Loads, w: float, m: int) -> list[tuple[float, int]]:
    """m jobs when loads differ by more than one job: every slot below the water level T takes
    its starts up to T, then fewer than one more per slot (earliest first) fixes the count."""
    t = _water_level(levels, w, m)
    pieces = [(load + n * w, slots, n) for load, slots in levels
              for n in [math.floor((t - load) / w) + 1 if load <= t else 0]]
    missing = m - sum(slots * n for _, slots, n in pieces)
    if missing > 0:  # the rest start in (T, T + w]: one more each on the least loaded
        return _give_one(sorted([p[0], p[1]] for p in pieces), missing, w)
    if missing < 0:  # rounding put a start just above T below it: take the latest back
        taken = sorted(([p[0], p[1]] for p in pieces if p[2] > 0), reverse=True)
        back = _give_one([[-v, c] for v, c in taken], -missing, w)  # least of -load = latest
        return [(-v, c) for v, c in back] + [(p[0], p[1]) for p in pieces if p[2] == 0]
    return [(p[0], p[1]) for p in pieces]


def place_equal_jobs(levels: Loads, w: float, m: int) -> Loads:
    """Loads after greedily placing ``m`` jobs of length ``w > 0`` on the least-loaded slots."""
    if m <= 0:
        return levels
    slots = sum(c for _, c in levels)
    if m <= slots and _nth_load(levels, m) <= levels[0][0] + w:
        # each of the m least-loaded slots takes one job: once a slot has one it is no longer
        # below any of the others (the common case of a few CTAs of one duration)
        pieces = _give_one(levels, m, w)
    elif levels[-1][0] <= levels[0][0] + w:
        # loads within one job of each other: every round of one job per slot keeps their
        # order, so m jobs are m // slots rounds plus one more on the m % slots least loaded
        rounds, rest = divmod(m, slots)
        pieces = _give_one([[v + rounds * w, c] for v, c in levels], rest, w)
    else:
        pieces = _spread(levels, w, m)
    merged: dict[float, int] = {}
    for load, count in pieces:
        merged[load] = merged.get(load, 0) + count
    return [[v, merged[v]] for v in sorted(merged)]


_MAKESPANS: dict[tuple, float] = {}


def lpt_makespan(durations: np.ndarray, counts: np.ndarray, slots: int) -> float:
    """Makespan of ``counts[i]`` jobs of ``durations[i]`` seconds on ``slots`` identical
    slots, longest first; memoised by content (a sweep meets the same job histogram for many
    configurations: ~1,500 distinct ones in 7,500 GNA windows x strides)."""
    durations, counts = np.asarray(durations, float), np.asarray(counts, np.int64)
    key = (durations.tobytes(), counts.tobytes(), int(slots))
    if key not in _MAKESPANS:
        if len(_MAKESPANS) > 65536:
            _MAKESPANS.clear()
        _MAKESPANS[key] = _lpt(durations, counts, int(slots))
    return _MAKESPANS[key]


def _lpt(durations: np.ndarray, counts: np.ndarray, slots: int) -> float:
    levels: Loads = [[0.0, slots]]
    # jobs of equal length are placed in one go (the greedy sequence is the same): CTAs of
    # different tile rows often share a duration
    jobs: dict[float, int] = {}
    for w, m in zip(durations.tolist(), counts.tolist()):
        jobs[w] = jobs.get(w, 0) + m
    for w in sorted(jobs, reverse=True):
        if w > 0:
            levels = place_equal_jobs(levels, w, jobs[w])
    return float(levels[-1][0])
