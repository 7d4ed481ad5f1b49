"""MoBA: mixture of block attention (Lu et al. 2025, arXiv 2502.13189).

Keys are cut into blocks of ``block_size``. Each query scores every block it may attend against
the block's mean-pooled key, and attends the ``top_k`` best blocks; its own block is always
selected and counts toward ``top_k``. With ``causal``, only blocks up to the query's own are
candidates and the own block is causally masked (queries sit bottom-right, as in decode).

Which blocks win depends on the data, how many never does: a causal query in block ``c``
attends ``min(top_k - 1, c)`` whole history blocks plus its own block up to itself; a
non-causal query attends ``min(top_k, blocks)`` whole blocks. So pairs, FLOPs and bytes are
exact from the parameters, *including the routing*: pooling reads every key once, the gate is a
(queries x blocks) matmul, top-k compares every candidate score. The tile map is
data-dependent, so MoBA has no tile counts; its attention is priced as multi-op kernels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PatternError
from ..workload import Workload
from .base import Pattern
from .opgraph import Op, build_graph


@dataclass(frozen=True)
class MoBA(Pattern):
    block_size: int
    top_k: int
    causal: bool = False

    name = "moba"
    tileable = False

    def check(self, wl: Workload) -> None:
        if self.block_size <= 0:
            raise PatternError(f"--block-size must be positive, got {self.block_size}")
        if self.top_k <= 0:
            raise PatternError(f"--top-k must be positive, got {self.top_k}")
        blocks = -(-wl.kv_len // self.block_size)
        if self.top_k > blocks:
            raise PatternError(f"--top-k {self.top_k} exceeds the {blocks} blocks of {self.block_size} keys "
                               f"in {wl.kv_len} keys: use --top-k <= {blocks} or a smaller --block-size")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern moba is for 1D sequences: use --seq, not --tokens")
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError("--pattern moba models --phase fwd and decode; its backward is not modelled yet")
        if not self.causal:
            if wl.q_len != wl.kv_len:
                raise PatternError("non-causal --pattern moba needs q_len == kv_len; use --causal for decode")
            if wl.kv_len % self.block_size:
                raise PatternError(f"--block-size {self.block_size} must divide the {wl.kv_len} keys for "
                                   "non-causal moba (which blocks are picked is data-dependent, so a short "
                                   "last block would make the count depend on the data)")

    def layout(self, wl: Workload):
        raise PatternError("moba's mask is data-dependent (top-k blocks): it has no per-dimension layout "
                           "and no tile counts")

    def params(self) -> dict:
        return {"block_size": self.block_size, "top_k": self.top_k, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["MoBA: own block always selected and counted in top_k; gate = query x mean-pooled block "
                "keys (every key read once to pool); selected blocks are data-dependent, their number is not",
                "MoBA kernels: pool, gate + top-k, attention over selected blocks (no tile-level model)"]

    # -- exact counts from the parameters ------------------------------------------------
    def _positions(self, wl: Workload) -> np.ndarray:
        return np.arange(wl.kv_len - wl.q_len, wl.kv_len, dtype=np.int64)  # bottom-right

    def pairs_per_head(self, wl: Workload) -> int:
        bs, k = self.block_size, self.top_k
        if not self.causal:
            return wl.q_len * min(k, wl.kv_len // bs) * bs
        pos = self._positions(wl)
        own_block = pos // bs
        return int(((pos - own_block * bs + 1) + np.minimum(k - 1, own_block) * bs).sum())

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len  # pooling reads every key

    def candidate_blocks_per_head(self, wl: Workload) -> int:
        """(query, block) gate scores computed: every block up to the own one (causal), or all."""
        blocks = -(-wl.kv_len // self.block_size)
        if not self.causal:
            return wl.q_len * blocks
        return int((self._positions(wl) // self.block_size + 1).sum())

    def mask(self, wl: Workload, rng: np.random.Generator | None = None) -> np.ndarray:
        """One draw of the data-dependent mask: random gate scores, the MoBA selection rule."""
        rng = rng or np.random.default_rng(0)
        bs, blocks = self.block_size, -(-wl.kv_len // self.block_size)
        key_block = np.arange(wl.kv_len) // bs
        out = np.zeros((wl.q_len, wl.kv_len), dtype=bool)
        for i, p in enumerate(self._positions(wl)):
            own = p // bs
            candidates = [b for b in range(own if self.causal else blocks) if b != own]
            scores = rng.standard_normal(len(candidates))
            chosen = {own, *(candidates[j] for j in np.argsort(-scores)[: self.top_k - 1])}
            out[i] = np.isin(key_block, list(chosen))
            if self.causal:
                out[i, p + 1:] = False
        return out

    def op_graph(self, wl: Workload, pairs: int):
        e, eo, b = wl.element_bytes, wl.output_bytes, wl.batch
        h, hkv, nq, nkv, d, dv = wl.q_heads, wl.kv_heads, wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
        blocks = -(-nkv // self.block_size)
        gates = b * h * self.candidate_blocks_per_head(wl)
        scores = b * h * pairs
        pooled = b * hkv * blocks * d * e
        return build_graph([
            Op("pool_keys", "pool", other_flops=b * hkv * nkv * d,
               reads={"k": b * hkv * nkv * d * e}, writes={"k_pooled": pooled}),
            Op("gate", "gate", matmul_flops=2 * gates * d, side="qk",
               reads={"q": b * h * nq * d * e, "k_pooled": pooled}, writes={"gate_scores": 0}),
            # top-k: one compare per candidate score, selected block ids to HBM
            Op("top_k", "gate", other_flops=gates, reads={"gate_scores": 0},
               writes={"block_ids": b * h * nq * self.top_k * 4}),
            Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
               per_pair=True, reads={"q": b * h * nq * d * e, "k": b * hkv * nkv * d * e,
                                     "block_ids": b * h * nq * self.top_k * 4}, writes={"p": 0}),
            Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
               other_flops=b * h * nq * dv, reads={"p": 0, "v": b * hkv * nkv * dv * e},
               writes={"o": b * h * nq * dv * eo}),
        ])
