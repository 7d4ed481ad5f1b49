"""Per-dimension attention rules and their exact closed-form counts.

A mask-expressible pattern is a product of 1D rules, one per token-grid dimension: a query
keeps key ``(k_1..k_r)`` iff every dimension's rule keeps ``(q_d, k_d)``. Pair counts and
touched-key counts of a product are products of the per-dimension counts, so nothing here is
ever O(N²). Each rule also has ``keep`` — the brute-force predicate tests compare against.
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
class DenseAxis:
    """Every query keeps every key along this dimension."""

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
    """NATTEN neighborhood attention along one dimension (self-attention, ``lq == lkv``).

    Positions with the same ``i % dilation`` form a sub-axis of length
    ``ceil((L - r) / dilation)``; on it the window of ``window`` keys starts at
    ``clamp(i' - window // 2, 0, L_r - window)``: shifted, never shrunk, at the borders, so
    every query sees exactly ``window`` keys. Matches NATTEN's ``get_window_start``
    (csrc/include/natten/naive/natten.cuh, and the reference backend in natten >= 0.20).
    """

    window: int
    dilation: int = 1

    def pairs(self, lq: int, lkv: int) -> int:
        return lq * self.window

    def touched_keys(self, lq: int, lkv: int) -> int:
        return lkv

    def window_start(self, q: np.ndarray, length: int) -> np.ndarray:
        """First kept key of each query, in sub-axis coordinates."""
        d, r = self.dilation, q % self.dilation
        sub_len = (length - r + d - 1) // d
        return np.clip(q // d - self.window // 2, 0, sub_len - self.window)

    def keep(self, q: np.ndarray, k: np.ndarray, lq: int, lkv: int) -> np.ndarray:
        d = self.dilation
        start = self.window_start(q, lq)
        ks = k // d
        return (k % d == q % d) & (ks >= start) & (ks < start + self.window)
