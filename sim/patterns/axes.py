"""Per-dimension attention rules and their exact counts.

A mask-expressible pattern is a product of 1D rules, one per token-grid dimension: a query
keeps key ``(k_1..k_r)`` iff every dimension's rule keeps ``(q_d, k_d)``. Pair counts and
touched-key counts of a product are products of per-dimension counts, so nothing here is
ever O(N²).

Every rule splits its axis into *groups* (dilation groups for neighborhood attention, one group
otherwise); inside a group each query ``i`` keeps the contiguous keys ``[start(i), stop(i))``,
with ``start`` and ``stop`` non-decreasing in ``i``. Tile counting (attnsim.tiles) relies on
exactly that. ``keep`` is the brute-force predicate the tests compare every count against.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def clamped_arith_sum(n: int, a: int, hi: int) -> int:
    """Exact ``sum_{i=0}^{n-1} clamp(a + i, 0, hi)`` in O(1) (``hi >= 0``)."""
    if n <= 0:
        return 0
    first_pos = min(max(0, -a), n)            # first i with a + i >= 0
    first_top = min(max(first_pos, hi - a + 1), n)  # first i with a + i > hi
    lo_val, hi_val = a + first_pos, a + first_top - 1
    middle = (lo_val + hi_val) * (first_top - first_pos) // 2
    return middle + (n - first_top) * hi


@dataclass(frozen=True)
class AxisGroup:
    """Positions ``offset, offset + step, ...`` of one axis: ``q_len`` queries, ``kv_len`` keys."""

    offset: int
    step: int
    q_len: int
    kv_len: int


def _single_group(lq: int, lkv: int) -> list[AxisGroup]:
    return [AxisGroup(0, 1, lq, lkv)]


@dataclass(frozen=True)
class DenseAxis:
    """Every query keeps every key along this dimension."""

    def groups(self, lq: int, lkv: int) -> list[AxisGroup]:
        return _single_group(lq, lkv)

    def bounds(self, i: np.ndarray, g: AxisGroup) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(i), np.full_like(i, g.kv_len)

    def pairs(self, lq: int, lkv: int) -> int:
        return lq * lkv

    def touched_keys(self, lq: int, lkv: int) -> int:
        return lkv

    def keep(self, q: np.ndarray, k: np.ndarray, lq: int, lkv: int) -> np.ndarray:
        return np.ones(np.broadcast(q, k).shape, dtype=bool)


@dataclass(frozen=True)
class BandAxis:
    """Query ``i`` keeps keys ``c - left .. c + right`` (clipped to ``[0, lkv)``), where
    ``c = i + (lkv - lq)``: FlashAttention-2's bottom-right alignment, so the last query lines
    up with the last key when ``lq != lkv``. ``None`` means unbounded on that side.

    causal = BandAxis(None, 0); causal sliding window w = BandAxis(w - 1, 0);
    symmetric window w = BandAxis(w // 2, w - 1 - w // 2).  Windows shrink at the borders.
    """

    left: int | None
    right: int | None

    def groups(self, lq: int, lkv: int) -> list[AxisGroup]:
        return _single_group(lq, lkv)

    def bounds(self, i: np.ndarray, g: AxisGroup) -> tuple[np.ndarray, np.ndarray]:
        c = i + (g.kv_len - g.q_len)
        start = np.zeros_like(i) if self.left is None else np.clip(c - self.left, 0, g.kv_len)
        stop = np.full_like(i, g.kv_len) if self.right is None else np.clip(c + self.right + 1, 0, g.kv_len)
        return start, np.maximum(start, stop)

    def pairs(self, lq: int, lkv: int) -> int:
        offset = lkv - lq
        # count(i) = clamp(c + right + 1, 0, lkv) - clamp(c - left, 0, lkv), c = i + offset.
        upper = lq * lkv if self.right is None else clamped_arith_sum(lq, offset + self.right + 1, lkv)
        lower = 0 if self.left is None else clamped_arith_sum(lq, offset - self.left, lkv)
        return upper - lower

    def touched_keys(self, lq: int, lkv: int) -> int:
        # Consecutive queries' windows overlap (shift by one), so their union is one interval.
        offset = lkv - lq
        hi = lkv if self.right is None else min(lkv, max(0, offset + lq - 1 + self.right + 1))
        lo = 0 if self.left is None else min(lkv, max(0, offset - self.left))
        return max(0, hi - lo)

    def keep(self, q: np.ndarray, k: np.ndarray, lq: int, lkv: int) -> np.ndarray:
        c = q + (lkv - lq)
        ok = np.broadcast_to((k >= 0) & (k < lkv), np.broadcast(q, k).shape).copy()
        if self.left is not None:
            ok &= k >= c - self.left
        if self.right is not None:
            ok &= k <= c + self.right
        return ok


@dataclass(frozen=True)
class NeighborhoodAxis:
    """Generalized neighborhood attention along one dimension, as NATTEN defines it
    (self-attention, ``lq == lkv == L``).

    Dilation ``d``: positions with the same ``i % d`` form a sub-axis of length
    ``ceil((L - r) / d)``; everything below happens inside it. Stride ``s``: queries in groups
    of ``s`` share one window. Non-causal: the group's centre query ``min(floor(i/s)*s + s//2,
    L-1)`` leads, window ``[clamp(lead - k//2, 0, L-k), +k)`` (shifted, never shrunk, so every
    query sees exactly ``k`` keys). Causal: the group's last query leads, window
    ``[max(lead - k + 1, 0), i + 1)`` (clipped at 0). Matches NATTEN 0.21
    ``get_win_start``/``get_win_end`` in csrc/include/natten/cuda/fna_blackwell/collective/
    fna_fusion.hpp and ``qkv_fix_dilation`` in csrc/include/natten/cuda/reference/mask.hpp.
    Indices past ``L`` (tile padding) use the leader clamped to ``L-1``, as the kernels do.
    """

    window: int
    dilation: int = 1
    stride: int = 1
    causal: bool = False

    def groups(self, lq: int, lkv: int) -> list[AxisGroup]:
        d = self.dilation
        return [AxisGroup(r, d, (lq - r + d - 1) // d, (lkv - r + d - 1) // d) for r in range(min(d, lq))]

    def bounds(self, i: np.ndarray, g: AxisGroup) -> tuple[np.ndarray, np.ndarray]:
        k, s, length = self.window, self.stride, g.q_len
        if self.causal:
            lead = np.minimum((i // s) * s + s - 1, length - 1)
            return np.maximum(lead - k + 1, 0), np.minimum(i + 1, length)
        lead = np.minimum((i // s) * s + s // 2, length - 1)
        start = np.clip(lead - k // 2, 0, length - k)
        return start, start + k

    def _group_pairs(self, g: AxisGroup) -> int:
        start, stop = self.bounds(np.arange(g.q_len, dtype=np.int64), g)
        return int((stop - start).sum())

    def pairs(self, lq: int, lkv: int) -> int:
        if not self.causal:
            return lq * self.window
        return sum(self._group_pairs(g) for g in self.groups(lq, lkv))

    def touched_keys(self, lq: int, lkv: int) -> int:
        return lkv  # every key is in some query's window (its own, at least)

    def keep(self, q: np.ndarray, k: np.ndarray, lq: int, lkv: int) -> np.ndarray:
        d = self.dilation
        start = np.empty(np.shape(q), dtype=np.int64)
        stop = np.empty(np.shape(q), dtype=np.int64)
        for g in self.groups(lq, lkv):  # windows depend on the group's length
            sel = (q % d) == g.offset
            s0, s1 = self.bounds(q[sel] // d, g)
            start[sel], stop[sel] = s0, s1
        ks = k // d
        return (k % d == q % d) & (ks >= start) & (ks < stop)


@dataclass(frozen=True)
class BlockAxis:
    """Blocked local attention along one dimension (self-attention, ``lq == lkv == L``).

    The axis is cut into segments at ``shift + k * block`` (plus 0 and L); a query attends the
    keys of its own segment widened by ``halo`` on each side (clipped to the axis). Swin windows:
    ``halo = 0`` (``shift = block // 2`` in shifted layers: Swin's cyclic shift plus mask splits
    the wrapped window into two segments, exactly these); HaloNet: ``shift = 0``, ``halo > 0``.
    """

    block: int
    halo: int = 0
    shift: int = 0
    cut: int | None = None  # one more segment boundary (Swin's wrapped window, seen after the roll)

    def groups(self, lq: int, lkv: int) -> list[AxisGroup]:
        return _single_group(lq, lkv)

    def _segment(self, i: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        k = np.floor_divide(i - self.shift, self.block)  # segment index (-1: the head before shift)
        lo = np.where(k < 0, 0, self.shift + k * self.block)
        hi = np.minimum(np.where(k < 0, self.shift, self.shift + (k + 1) * self.block), length)
        if self.cut is not None:
            lo = np.where(i >= self.cut, np.maximum(lo, self.cut), lo)
            hi = np.where(i < self.cut, np.minimum(hi, self.cut), hi)
        return lo, hi

    def bounds(self, i: np.ndarray, g: AxisGroup) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._segment(np.asarray(i), g.q_len)
        return np.maximum(lo - self.halo, 0), np.minimum(hi + self.halo, g.kv_len)

    def pairs(self, lq: int, lkv: int) -> int:
        start, stop = self.bounds(np.arange(lq, dtype=np.int64), AxisGroup(0, 1, lq, lkv))
        return int((stop - start).sum())

    def touched_keys(self, lq: int, lkv: int) -> int:
        return lkv  # every key is in its own segment

    def keep(self, q: np.ndarray, k: np.ndarray, lq: int, lkv: int) -> np.ndarray:
        start, stop = self.bounds(np.asarray(q), AxisGroup(0, 1, lq, lkv))
        return (k >= start) & (k < stop)
