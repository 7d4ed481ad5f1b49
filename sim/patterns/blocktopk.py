"""Block-sparse top-k attention: routing per *query block*, as block-sparse kernels run it.

Queries and keys are cut into blocks of ``block_size``; each query block scores the key blocks
it may attend with its mean-pooled query against their mean-pooled keys and attends the
``top_k`` best, its own (diagonal) block always among them. With ``causal``, only blocks up to
the own one are candidates and the own block is causally masked. This is MoBA's rule (arXiv
2502.13189) routed per query block instead of per query — the granularity at which block-sparse
kernels (FlexAttention BlockMasks, SeerAttention's block gates, arXiv 2410.13276) skip work, so
the attended tiles are exactly the selected blocks.

Which blocks win depends on the data, how many does not: query block ``c`` attends
``min(top_k - 1, c)`` whole history blocks plus its causal diagonal block (causal), or
``min(top_k, blocks)`` whole blocks. Pairs, tiles (with the pattern's own block tiles), FLOPs
and bytes are therefore exact from the parameters, routing included: pooling reads every query
and key once, the gate is a (query blocks x key blocks) matmul, top-k compares each candidate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PatternError
from ..tiles import Tiling
from ..workload import Workload
from .base import Pattern
from .flagvals import causal_switch, int_flag, one_block
from .opgraph import ID_BYTES, Op, build_graph



@dataclass(frozen=True)
class BlockTopK(Pattern):
    block_size: int
    top_k: int
    causal: bool = False

    name = "block-topk"
    edge_tiled = True  # counts its own block tiles (tile_rows)
    flags = frozenset({"block_size", "top_k", "causal"})

    @classmethod
    def from_flags(cls, f: dict) -> "BlockTopK":
        block, k = one_block(f, "block-topk", 128), int_flag(f, "top_k")
        if block is None or k is None:
            raise PatternError("--pattern block-topk needs --block-size and --top-k (e.g. --block-size 128 --top-k 8)")
        return cls(block, k, causal_switch(f, "block-topk"))

    def check(self, wl: Workload) -> None:
        if self.block_size <= 0 or self.top_k <= 0:
            raise PatternError(f"--block-size and --top-k must be positive, got {self.block_size} and {self.top_k}")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern block-topk is for 1D sequences: use --seq, not --tokens")
        if wl.q_len != wl.kv_len or wl.phase == "decode":
            raise PatternError("--pattern block-topk routes query blocks of a self-attention prefill: use --seq "
                               "without --kv-seq, --phase fwd/bwd/fwd+bwd (MoBA prices per-query decode)")
        blocks = self.blocks(wl)
        if self.top_k > blocks:
            raise PatternError(f"--top-k {self.top_k} exceeds the {blocks} blocks of {self.block_size} tokens: "
                               f"use --top-k <= {blocks} or a smaller --block-size")
        if not self.causal and wl.kv_len % self.block_size:
            raise PatternError(f"--block-size {self.block_size} must divide the {wl.kv_len} tokens for non-causal "
                               "block-topk (which blocks win is data-dependent: a short block would make the "
                               "count depend on the data)")

    def blocks(self, wl: Workload) -> int:
        return -(-wl.kv_len // self.block_size)

    def layout(self, wl: Workload):
        raise PatternError("block-topk's mask is data-dependent: it is counted per block (tile_rows)")

    def params(self) -> dict:
        return {"block_size": self.block_size, "top_k": self.top_k, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"block-topk: each query block of {self.block_size} attends its top-{self.top_k} key blocks "
                "(own block included) by mean-pooled query x key scores; which ones is data-dependent, "
                "how many is not"]

    def preferred_tiling(self):
        return Tiling((self.block_size,), (self.block_size,))

    # -- exact counts ------------------------------------------------------------------
    def _rows_per_block(self, wl: Workload) -> np.ndarray:
        n, b = wl.q_len, self.block_size
        rows = np.full(self.blocks(wl), b, dtype=np.int64)
        rows[-1] = n - b * (len(rows) - 1)
        return rows

    def _history(self, wl: Workload) -> np.ndarray:
        """Whole blocks each query block attends besides its own (causal) or in all."""
        c = np.arange(self.blocks(wl), dtype=np.int64)
        return np.minimum(self.top_k - 1, c) if self.causal else np.full_like(c, min(self.top_k, len(c)))

    def pairs_per_head(self, wl: Workload) -> int:
        rows = self._rows_per_block(wl)
        pairs = rows * self._history(wl) * self.block_size
        if self.causal:  # own block: lower triangle (history blocks are never the short last one)
            pairs = pairs + rows * (rows + 1) // 2
        return int(pairs.sum())

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len  # pooling reads every key

    def candidates_per_head(self, wl: Workload) -> int:
        blocks = self.blocks(wl)
        return blocks * (blocks + 1) // 2 if self.causal else blocks * blocks

    def tile_rows(self, wl: Workload, tq: int, tk: int) -> np.ndarray:
        if (tq, tk) != (self.block_size, self.block_size):
            raise PatternError(f"block-topk is counted on its own {self.block_size}-token block tiles: use "
                               f"--q-tile {self.block_size} --kv-tile {self.block_size} (or no tile flags)")
        blocks, visited = self.blocks(wl), self._history(wl) + (1 if self.causal else 0)
        if self.causal:  # the diagonal block is partial unless it holds a single key
            last_keys = wl.kv_len - self.block_size * (blocks - 1)
            keys_own = np.where(np.arange(blocks) == blocks - 1, last_keys, self.block_size)
            full = visited - (keys_own > 1)
        else:
            full = visited
        kv_total = np.full(blocks, blocks, dtype=np.int64)
        return np.stack([kv_total, visited, full, visited, full, visited, kv_total], axis=1)

    def mask(self, wl: Workload, rng: np.random.Generator | None = None) -> np.ndarray:
        """One draw of the data-dependent mask: random block scores, the selection rule."""
        rng = rng or np.random.default_rng(0)
        b, blocks = self.block_size, self.blocks(wl)
        out = np.zeros((wl.q_len, wl.kv_len), dtype=bool)
        for c in range(blocks):
            others = [j for j in range(c if self.causal else blocks) if j != c]
            n_pick = self._history(wl)[c] - (0 if self.causal else 1)
            chosen = [c, *np.array(others, dtype=int)[np.argsort(-rng.standard_normal(len(others)))[:n_pick]]]
            for j in chosen:
                out[c * b:(c + 1) * b, j * b:(j + 1) * b] = True
        if self.causal:
            out &= np.tril(np.ones_like(out))
        return out

    # -- closed forms (attnsim formula block-topk) -----------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "BlockTopK":
        return cls(block_size=1, top_k=1, causal=causal)

    def formula_values(self, wl: Workload) -> dict:
        return {"b": self.block_size, "k": self.top_k}

    def closed_form(self, sp, sym: dict, phase: str):
        if phase != "fwd":
            raise PatternError("--pattern block-topk has closed forms for --phase fwd only")
        bb, h, hkv, n, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "D", "Dv", "e", "eo"))
        b, k = sp.symbols("b k", positive=True, integer=True)
        nb = n / b
        if self.causal:  # sum over query blocks c of min(k - 1, c): a ramp up to k - 1, then flat
            j = sp.Min(nb, k - 1)
            pairs = b * b * (j * (j - 1) / 2 + (nb - j) * (k - 1)) + nb * b * (b + 1) / 2
            candidates = nb * (nb + 1) / 2
        else:
            pairs, candidates = n * k * b, nb**2
        exprs = {"pairs_per_head": pairs,
                 "matmul_flops": 2 * bb * h * (d * candidates + pairs * (d + dv)),
                 "exp": bb * h * pairs,
                 "compulsory_bytes": e * bb * (h * n * d + hkv * n * (d + dv)) + eo * bb * h * n * dv}
        return exprs, {"b": "block size (query and key blocks)", "k": "top-k blocks per query block"}, \
            ("N = M, b divides N", "k <= N / b")

    def op_graph(self, wl: Workload, pairs: int):
        if wl.phase != "fwd":
            raise PatternError("--pattern block-topk models --phase fwd (its routing is not differentiated "
                               "and its backward is not modelled yet)")
        e, eo, bsz = wl.element_bytes, wl.output_bytes, wl.batch
        h, hkv, n, d, dv = wl.q_heads, wl.kv_heads, wl.q_len, wl.qk_head_dim, wl.v_head_dim
        blocks, k = self.blocks(wl), self.top_k
        gates, scores = bsz * h * self.candidates_per_head(wl), bsz * h * pairs
        q_bytes, k_bytes = bsz * h * n * d * e, bsz * hkv * n * d * e
        pooled = bsz * (h + hkv) * blocks * d * e
        ids = bsz * h * blocks * k * ID_BYTES
        return build_graph([
            Op("pool", "route", other_flops=bsz * (h + hkv) * n * d, reads={"q": q_bytes, "k": k_bytes},
               writes={"pooled": pooled}),
            Op("gate", "route", matmul_flops=2 * gates * d, side="qk", reads={"pooled": pooled},
               writes={"gate_scores": 0}),
            Op("top_k", "route", other_flops=gates, reads={"gate_scores": 0}, writes={"block_ids": ids}),
            Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
               per_pair=True, reads={"q": q_bytes, "k": k_bytes, "block_ids": ids}, writes={"p": 0}),
            Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
               other_flops=bsz * h * n * dv, reads={"p": 0, "v": bsz * hkv * n * dv * e},
               writes={"o": bsz * h * n * dv * eo}),
        ])
