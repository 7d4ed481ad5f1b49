"""PowerAttention (Chen et al. 2025, arXiv 2503.03588): causal block-sparse attention whose query
block attends the key blocks at power-of-two distances (d = 1, 2, 4, ...), its own block
(causally), the ``window_blocks`` most recent blocks and the first ``sink_blocks`` — the
FlexAttention block mask ``(d & (d - 1)) == 0`` plus sliding and sink blocks. Receptive field
grows exponentially with depth while each query block reads O(log n) blocks.

Everything is decided per block, so counts enumerate the selected (query block, key block)
pairs: O(blocks x log blocks). Tiles are the blocks themselves.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PatternError
from ..workload import Workload
from .base import Pattern
from .graph import attention_forms
from .library import ramp_sum


@dataclass(frozen=True)
class Power(Pattern):
    block_size: int
    window_blocks: int = 1   # the own block
    sink_blocks: int = 0

    name = "power"
    edge_tiled = True

    def check(self, wl: Workload) -> None:
        if self.block_size <= 0 or self.window_blocks < 1 or self.sink_blocks < 0:
            raise PatternError("--block-size must be positive, --window-blocks >= 1 (the own block), "
                               f"--sink-blocks >= 0; got {self.block_size}, {self.window_blocks}, {self.sink_blocks}")
        if wl.q_len != wl.kv_len or (wl.grid is not None and len(wl.grid) > 1):
            raise PatternError("--pattern power is causal self-attention over a 1D sequence: use --seq, no --kv-seq")

    def layout(self, wl: Workload):
        raise PatternError("power attention is decided per block: it has no per-dimension band")

    def params(self) -> dict:
        return {"block_size": self.block_size, "window_blocks": self.window_blocks, "sink_blocks": self.sink_blocks}

    def selected(self, qb: int) -> np.ndarray:
        """Key blocks query block ``qb`` attends (sorted)."""
        d = np.arange(qb + 1)[::-1]  # distance of key block kb = qb - d
        keep = ((d & (d - 1)) == 0) | (d < self.window_blocks) | (qb - d < self.sink_blocks)
        return (qb - d)[keep]

    def _blocks(self, wl: Workload) -> int:
        return -(-wl.q_len // self.block_size)

    def _size(self, wl: Workload, b) -> np.ndarray:
        return np.minimum(self.block_size, wl.q_len - np.asarray(b) * self.block_size)

    def pairs_per_head(self, wl: Workload) -> int:
        total = 0
        for qb in range(self._blocks(wl)):
            rows = int(self._size(wl, qb))
            past = self.selected(qb)[:-1]  # every block before the own one is attended whole
            total += rows * int(self._size(wl, past).sum()) + rows * (rows + 1) // 2
        return total

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len  # every block is some query block's own

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Power":
        if rank != 1:
            raise PatternError("--rank: --pattern power is 1D (use --rank 1)")
        return cls(block_size=1)  # causal by construction: --causal changes nothing

    def closed_form(self, sp, s: dict, phase: str):
        """Past blocks are whole (only the last block can be short), so pairs = b^2 x (past blocks
        selected by the full query blocks) + r b x (those of the last, r-row block) + the causal
        own blocks. Past blocks of query block q: window and sink distances merge into
        min(q, W - 1 + S); the powers of two between them (in [W, q - S]) add
        P(q - S) - P(W - 1), P(x) = floor(log2 x) + 1 counting the powers of two <= x."""
        n = s["N"]
        b, w = sp.symbols("b W", integer=True, positive=True)
        sinks = sp.Symbol("S", integer=True, nonnegative=True)
        blocks = sp.ceiling(n / b)
        r = n - (blocks - 1) * b  # rows of the last query block

        def past(q):  # past key blocks of query block q
            return sp.Min(q, w - 1 + sinks) + sp.Max(0, _powers_upto(sp, q - sinks) - _powers_upto(sp, w - 1))

        def past_sum(count):  # sum of past(q) for q < count, via ramp_sum and _powers_sum
            top = sp.Max(count - 1 - sinks, w - 1)  # powers counted for q - S in [W, top]
            powers = _powers_sum(sp, top) - _powers_sum(sp, w - 1) - (top - w + 1) * _powers_upto(sp, w - 1)
            return ramp_sum(sp, count - 1, w - 1 + sinks) + powers

        pairs = (b**2 * past_sum(blocks - 1) + r * b * past(blocks - 1)
                 + (blocks - 1) * b * (b + 1) / 2 + r * (r + 1) / 2)
        meanings = {"b": "block size (tokens)", "W": "window blocks (the own block included)", "S": "sink blocks"}
        assumes = ("N = M (causal self-attention)",
                   "floor(log2 x) evaluates exactly in float64 for x < 2^48 blocks (numpy.log2)")
        return attention_forms(sp, s, phase, pairs, s["M"]), meanings, assumes

    def formula_values(self, wl: Workload) -> dict:
        return {"b": self.block_size, "W": self.window_blocks, "S": self.sink_blocks}

    def mask(self, wl: Workload) -> np.ndarray:
        bs = self.block_size
        q = np.arange(wl.q_len)
        out = np.zeros((wl.q_len, wl.kv_len), dtype=bool)
        for qb in range(self._blocks(wl)):
            rows = q[qb * bs:(qb + 1) * bs]
            for kb in self.selected(qb):
                out[np.ix_(rows, np.arange(kb * bs, min((kb + 1) * bs, wl.kv_len)))] = True
        return out & (q[None, :] <= q[:, None])

    def preferred_tiling(self):
        from ..tiles import Tiling

        return Tiling((self.block_size,), (self.block_size,), "block-sparse")

    def tile_rows(self, wl: Workload, tq: int, tk: int) -> np.ndarray:
        if tq != self.block_size or tk != self.block_size:
            raise PatternError(f"--pattern power is counted at its block granularity: use --q-tile "
                               f"{self.block_size} --kv-tile {self.block_size} (or no tile flags)")
        n = self._blocks(wl)
        rows = np.zeros((n, 7), dtype=np.int64)
        rows[:, 0] = rows[:, 6] = n
        for qb in range(n):
            sel = self.selected(qb)
            complete = self._size(wl, qb) == self.block_size
            rows[qb, 1] = len(sel)
            # the own block is causal: partial, unless it is a single token
            rows[qb, 2] = (len(sel) - 1 + (self.block_size == 1)) if complete else 0
            rows[qb, 4] = len(sel) - 1 + (self._size(wl, qb) == 1)  # a 1-token own block keeps all
            rows[qb, 3] = rows[qb, 5] = sel[-1] - sel[0] + 1
        return rows


def _log2_floor(sp, x):
    """floor(log2(max(x, 1))): codegen's log2 lambdifies to numpy.log2, exact at powers of two
    (sympy's log(x, 2) would divide two rounded logarithms)."""
    from sympy.codegen.cfunctions import log2

    return sp.floor(log2(sp.Max(x, 1)))


def _powers_upto(sp, x):
    """Powers of two in [1, x] (x <= 0: x itself, which callers clip at 0)."""
    return sp.Min(x, 1) + _log2_floor(sp, x)


def _powers_sum(sp, x):
    """sum_{j=1..x} (floor(log2 j) + 1) = (L + 1)(x + 1) - 2^(L+1) + 1, L = floor(log2 x); 0 at x = 0."""
    top = _log2_floor(sp, x)
    return (top + 1) * (x + 1) - 2 ** (top + 1) + 1
