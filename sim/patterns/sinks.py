"""Attention sinks + causal sliding window (StreamingLLM, Xiao et al. 2023, arXiv 2309.17453):
each query keeps the first ``sinks`` keys and its causal window of ``window`` keys
(bottom-right aligned, as in decode). Two intervals per query, so no single per-dimension band;
pairs have a closed form and 1D block tiles are counted from interval intersections per query
and candidate block — O(N x (window + sinks) / block), never O(N^2).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PatternError
from ..workload import Workload
from .axes import BandAxis, clamped_arith_sum
from .base import Pattern
from .graph import attention_forms
from .library import ramp_sum


@dataclass(frozen=True)
class Sinks(Pattern):
    window: int
    sinks: int = 4  # StreamingLLM keeps 4 initial tokens

    name = "sinks"
    edge_tiled = True

    def check(self, wl: Workload) -> None:
        if self.window <= 0 or self.sinks < 0:
            raise PatternError(f"--window must be positive and --sinks >= 0, got {self.window} and {self.sinks}")
        if self.window > wl.kv_len:
            raise PatternError(f"--window {self.window} exceeds the {wl.kv_len} keys")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern sinks is for 1D sequences: use --seq")

    def layout(self, wl: Workload):
        raise PatternError("sinks + window keeps two key ranges per query: no single per-dimension band")

    def params(self) -> dict:
        return {"window": self.window, "sinks": self.sinks}

    def _ranges(self, wl: Workload, i: np.ndarray):
        """Per query: window [ws, we) and the sink keys outside it, [0, s)."""
        pos = i + (wl.kv_len - wl.q_len)
        ws, we = np.maximum(pos - self.window + 1, 0), pos + 1
        return ws, we, np.minimum(self.sinks, ws)

    def pairs_per_head(self, wl: Workload) -> int:
        window = BandAxis(self.window - 1, 0).pairs(wl.q_len, wl.kv_len)
        offset = wl.kv_len - wl.q_len
        return window + clamped_arith_sum(wl.q_len, offset - self.window + 1, self.sinks)

    def touched_keys(self, wl: Workload) -> int:
        first_window_start = max(wl.kv_len - wl.q_len - self.window + 1, 0)
        return wl.kv_len - first_window_start + min(self.sinks, first_window_start)

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Sinks":
        if rank != 1:
            raise PatternError("--rank: --pattern sinks is 1D (use --rank 1)")
        return cls(window=1, sinks=0)  # causal by construction: --causal changes nothing

    def closed_form(self, sp, s: dict, phase: str):
        """Query i sits at p = i + M - N and keeps clamp(p + 1, 0, w) window keys and
        clamp(p - w + 1, 0, S) sink keys: both sums over p are differences of ``ramp_sum``."""
        n, m, w = s["N"], s["M"], s["w"]
        sinks = sp.Symbol("S", integer=True, nonnegative=True)
        window_pairs = ramp_sum(sp, m, w) - ramp_sum(sp, m - n, w)
        sink_pairs = ramp_sum(sp, m - w, sinks) - ramp_sum(sp, m - n - w, sinks)
        # the windows' union is [first window start, M); sinks add the keys before it
        first_start = sp.Max(m - n - w + 1, 0)
        touched = m - first_start + sp.Min(sinks, first_start)
        exprs = attention_forms(sp, s, phase, window_pairs + sink_pairs, touched)
        exprs.update({"pairs_per_head.window": window_pairs, "pairs_per_head.sinks": sink_pairs})
        meanings = {"S": "sink keys (the first S keys, kept by every query past its window)"}
        return exprs, meanings, ()

    def formula_values(self, wl: Workload) -> dict:
        return {"w": self.window, "S": self.sinks}

    def mask(self, wl: Workload) -> np.ndarray:
        ws, we, s = self._ranges(wl, np.arange(wl.q_len))
        k = np.arange(wl.kv_len)[None, :]
        return ((k >= ws[:, None]) & (k < we[:, None])) | (k < s[:, None])

    def tile_rows(self, wl: Workload, tq: int, tk: int) -> np.ndarray:
        """Per Q block, the AxisTiles columns for 1D blocks, from interval intersections."""
        q_blocks, kv_blocks = -(-wl.q_len // tq), -(-wl.kv_len // tk)
        rows = np.zeros((q_blocks, 7), dtype=np.int64)
        rows[:, 0] = rows[:, 6] = kv_blocks
        sink_blocks = -(-self.sinks // tk)
        for b in range(q_blocks):
            i = np.arange(b * tq, min((b + 1) * tq, wl.q_len))
            ws, we, s = self._ranges(wl, i)
            blocks = np.union1d(np.arange(min(sink_blocks, kv_blocks)), np.arange(ws.min() // tk, -(-we.max() // tk)))
            lo, hi = blocks * tk, np.minimum(blocks * tk + tk, wl.kv_len)
            kept = (np.clip(np.minimum(we[:, None], hi) - np.maximum(ws[:, None], lo), 0, None)
                    + np.clip(np.minimum(s[:, None], hi) - lo, 0, None)).sum(axis=0)
            real = len(i) * (hi - lo)
            nonempty = blocks[kept > 0]
            rows[b, 1] = len(nonempty)
            rows[b, 2] = int(((kept == tq * tk) & (real == tq * tk)).sum())
            rows[b, 4] = int(((kept == real) & (kept > 0)).sum())
            rows[b, 3] = rows[b, 5] = nonempty.max() - nonempty.min() + 1 if len(nonempty) else 0
        return rows
