"""HyperAttention (Han et al. 2023, arXiv 2310.05869; github insuhan/hyper-attn).

Non-causal: queries and keys are sorted by an angular LSH (``lsh_projections`` random
projections), each block of ``block_size`` sorted queries attends its block of sorted keys, and
every query also attends ``sample_size`` uniformly sampled keys; with at most ``min_seq_len``
keys it is exact attention. Causal: split queries and keys in halves; the two diagonal halves
recurse (exact causal attention once at most ``min_seq_len`` long), the lower-left quarter is
non-causal HyperAttention. Which keys are picked is data-dependent, how many is not: pairs,
FLOPs and the hashing/sorting work are exact from the parameters. Sampled keys overlapping a
block are computed twice, as the implementation does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from ..errors import PatternError
from ..workload import Workload
from .base import Pattern
from .opgraph import Op, build_graph


@dataclass(frozen=True)
class Hyper(Pattern):
    block_size: int = 256      # hyper-attn benchmark_single_attention.py default
    sample_size: int = 256     # same
    min_seq_len: int = 4096    # same
    lsh_projections: int = 7   # assumption: the hyper-attn AngularLSH default num_projs
    causal: bool = True

    name = "hyper"
    tileable = False

    def check(self, wl: Workload) -> None:
        if min(self.block_size, self.sample_size, self.min_seq_len, self.lsh_projections) <= 0:
            raise PatternError("--block-size, --sample-size, --min-seq-len and --lsh-projections must be positive")
        if self.min_seq_len < self.block_size:
            raise PatternError(f"--min-seq-len {self.min_seq_len} must be at least --block-size {self.block_size}")
        if wl.q_len != wl.kv_len or (wl.grid is not None and len(wl.grid) > 1):
            raise PatternError("--pattern hyper is self-attention over a 1D sequence: use --seq, no --kv-seq")
        if wl.phase not in ("fwd",):
            raise PatternError("--pattern hyper models --phase fwd only")

    def layout(self, wl: Workload):
        raise PatternError("hyperattention's keys are chosen by LSH and sampling: no per-dimension layout")

    def params(self) -> dict:
        return {"block_size": self.block_size, "sample_size": self.sample_size,
                "min_seq_len": self.min_seq_len, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"hyperattention: LSH with {self.lsh_projections} projections (assumed repo default), one "
                "compare-exchange per element per sort level; sampled keys overlapping a block counted twice"]

    # -- exact counts from the parameters: (pairs, LSH-hashed rows, sorted elements x log2) ----
    def _noncausal(self, nq: int, nk: int) -> tuple[int, int, int]:
        if nk <= self.min_seq_len:
            return nq * nk, 0, 0
        if nq != nk or nq % self.block_size:
            raise PatternError(f"hyperattention pairs sorted query and key blocks of --block-size "
                               f"{self.block_size}: {nq} queries and {nk} keys do not; use a sequence that "
                               "halves evenly into whole blocks (e.g. a power of two)")
        per_query = self.block_size + min(self.sample_size, nk)
        sort = nq * math.ceil(math.log2(nq)) + nk * math.ceil(math.log2(nk))
        return nq * per_query, nq + nk, sort

    def _work(self, n: int) -> tuple[int, int, int]:
        @lru_cache(maxsize=None)
        def causal(length: int) -> tuple[int, int, int]:
            if length <= self.min_seq_len:
                return length * (length + 1) // 2, 0, 0
            top, bottom = length // 2, length - length // 2
            parts = (causal(top), causal(bottom), self._noncausal(bottom, top))
            return tuple(sum(p[i] for p in parts) for i in range(3))

        return causal(n) if self.causal else self._noncausal(n, n)

    def pairs_per_head(self, wl: Workload) -> int:
        return self._work(wl.q_len)[0]

    def reference_pairs(self, n: int, rng) -> int:
        """The algorithm run on index sets (random LSH order and samples): pairs it computes."""
        import numpy as np

        def noncausal(q: np.ndarray, k: np.ndarray) -> int:
            if len(k) <= self.min_seq_len:
                return len(q) * len(k)
            qs, ks = rng.permutation(q), rng.permutation(k)  # any LSH order
            sample = rng.choice(k, size=min(self.sample_size, len(k)), replace=False)
            blocks = sum(len(qs[i:i + self.block_size]) * len(ks[i:i + self.block_size])
                         for i in range(0, len(qs), self.block_size))
            return blocks + len(q) * len(sample)

        def causal(idx: np.ndarray) -> int:
            if len(idx) <= self.min_seq_len:
                return len(idx) * (len(idx) + 1) // 2
            top, bottom = idx[:len(idx) // 2], idx[len(idx) // 2:]
            return causal(top) + causal(bottom) + noncausal(bottom, top)

        idx = np.arange(n)
        return causal(idx) if self.causal else noncausal(idx, idx)

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len

    def op_graph(self, wl: Workload, pairs: int):
        bh, e, eo = wl.batch * wl.q_heads, wl.element_bytes, wl.output_bytes
        n, d, dv = wl.q_len, wl.qk_head_dim, wl.v_head_dim
        _, hashed, sorted_elems = self._work(n)
        scores = bh * pairs
        return build_graph([
            Op("lsh_hash", "lsh", matmul_flops=2 * bh * hashed * d * self.lsh_projections, side="qk",
               reads={"q": bh * n * d * e, "k": wl.batch * wl.kv_heads * n * d * e}, writes={"buckets": bh * hashed * 4}),
            Op("sort", "lsh", other_flops=bh * sorted_elems, reads={"buckets": bh * hashed * 4},
               writes={"perm": bh * hashed * 4}),
            Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
               per_pair=True, reads={"q": bh * n * d * e, "k": wl.batch * wl.kv_heads * n * d * e,
                                     "perm": bh * hashed * 4}, writes={"p": 0}),
            Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
               other_flops=bh * n * dv, reads={"p": 0, "v": wl.batch * wl.kv_heads * n * dv * e},
               writes={"o": bh * n * dv * eo}),
        ])
