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
