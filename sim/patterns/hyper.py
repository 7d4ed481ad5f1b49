"""HyperAttention (Han et al. 2023, arXiv 2310.05869; github insuhan/hyper-attn).

Non-causal: queries and keys are sorted by an angular LSH (``lsh_projections`` random
projections), each block of ``block_size`` sorted queries attends its block of sorted keys, and
every query also attends ``sample_size`` uniformly sampled keys; with fewer than ``min_seq_len``
queries it is exact attention (``forward_no_causal_mask``: ``if self.min_seq_len > n_query``). Causal: split queries and keys in halves; the two diagonal halves
recurse (exact causal attention once at most ``min_seq_len`` long), the lower-left quarter is
non-causal HyperAttention. Which keys are picked is data-dependent, how many is not: pairs,
FLOPs and the hashing/sorting work are exact from the parameters. Sampled keys overlapping a
block are computed twice, as the implementation does.

Backward (``bwd``, ``fwd+bwd``): the repo trains through autograd — its Triton FlashAttention
(models/attention/flash_attn_triton_for_hyper.py) has a backward (delta pre-pass, main kernel, dQ
copy) run once per sub-attention (diagonal leaves, sorted blocks, sampled keys); the LSH sort and
the sampling only yield indices (no gradient), gathered rows scatter their gradients back. Every
computed pair, the twice-computed sampled ones included, gets the five FlashAttention-2 matmuls:
we count one FlashAttention-2 backward over all of them, reading the saved sort permutation. The
repo detaches each sub-attention's LSE (``exact_attention``: ``lse = lse.detach()``), so its
gradient treats the merge weights as constants and each call computes its own delta: same
matmuls and exponentials, element-wise work differs (the per-call delta and dO scaling are not
counted; inferred: we count one delta per query row).

Closed forms (``attnsim formula hyper``): causal, with ``L`` levels whose lower-left quarter is
HyperAttention (halves of at least ``min_seq_len``; below, splitting with exact quarters is exact
causal attention on ``N / 2^L`` tokens), level ``i`` holds ``2^i`` quarters of ``N / 2^(i+1)``
queries: ``pairs = N/2 (N / 2^L + 1 + L (block_size + sample_size))`` and ``L N`` rows hashed
(assumes ``sample_size <= min_seq_len``). Non-causal: ``N (block_size + min(sample_size, N))``
from ``min_seq_len`` queries on, else ``N^2``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from ..errors import PatternError
from ..workload import Workload
from .backward import TRAINING_PHASES, attention_backward, phase_ops
from .base import Pattern
from .opgraph import LSE_BYTES, Op, build_graph

INDEX_BYTES = 4  # int32 bucket / permutation entry


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
        if wl.phase == "decode":
            raise PatternError("--pattern hyper models --phase fwd, bwd and fwd+bwd (no decode: queries and "
                               "keys are sorted together)")
        if wl.q_len != wl.kv_len or (wl.grid is not None and len(wl.grid) > 1):
            raise PatternError("--pattern hyper is self-attention over a 1D sequence: use --seq, no --kv-seq")

    def layout(self, wl: Workload):
        raise PatternError("hyperattention's keys are chosen by LSH and sampling: no per-dimension layout")

    def params(self) -> dict:
        return {"block_size": self.block_size, "sample_size": self.sample_size,
                "min_seq_len": self.min_seq_len, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"hyperattention: LSH with {self.lsh_projections} projections (assumed repo default), one "
                "compare-exchange per element per sort level; sampled keys overlapping a block counted twice"] + (
            ["hyperattention backward: one FlashAttention-2 backward over every computed pair, saved sort "
             "permutation; LSH and sampling not differentiated (the repo's per-call deltas not counted)"]
            if wl.phase in TRAINING_PHASES else [])

    # -- exact counts from the parameters: (pairs, LSH-hashed rows, sorted elements x log2) ----
    def _noncausal(self, nq: int, nk: int) -> tuple[int, int, int]:
        if nq < self.min_seq_len:  # the repo's rule: exact when min_seq_len > n_query
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
            if len(q) < self.min_seq_len:
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
        return build_graph(phase_ops(wl, lambda training: _forward(self, wl, pairs, training),
                                     lambda: _backward(self, wl, pairs)))

    # -- closed forms (attnsim formula hyper) ------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Hyper":
        return cls(causal=causal)

    def levels(self, n: int) -> int:
        """Causal recursion levels whose lower-left quarter is HyperAttention: the level splits
        (more than min_seq_len tokens) and its quarter has at least min_seq_len queries."""
        level = 0
        while n > self.min_seq_len and n - n // 2 >= self.min_seq_len:
            level, n = level + 1, n // 2
        return level

    def formula_values(self, wl: Workload) -> dict:
        return {"bs": self.block_size, "s": self.sample_size, "mu": self.min_seq_len, "P": self.lsh_projections,
                "L": self.levels(wl.q_len)}

    def closed_form(self, sp, sym: dict, phase: str):
        b, h, hkv, n, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "D", "Dv", "e", "eo"))
        bs, s, mu, projs, levels = sp.symbols("bs s mu P L", positive=True, integer=True)
        if phase == "decode":
            raise PatternError("--pattern hyper has no decode phase: use --phase fwd, bwd or fwd+bwd")
        if self.causal:
            pairs = n / 2 * (n / 2**levels + 1 + levels * (bs + s))
            hashed = levels * n  # 2^i quarters of N / 2^(i+1) queries and as many keys, per level
            assumes = ("N = 2^L m with m < 2 mu (and m >= mu when L >= 1); bs divides N / 2^L", "s <= mu")
        else:
            pairs = sp.Piecewise((n**2, n < mu), (n * (bs + sp.Min(s, n)), True))
            hashed = sp.Piecewise((0, n < mu), (2 * n, True))
            assumes = ("bs divides N above mu",)
        io = e * (b * h * n * d + b * hkv * n * (d + dv)) + eo * b * h * n * dv  # Q, K, V in; O out
        saved = LSE_BYTES * b * h * n + INDEX_BYTES * b * h * hashed  # LSE and sort permutation
        fwd = (2 * b * h * (pairs * (d + dv) + hashed * d * projs), b * h * pairs, io)
        bwd = (2 * b * h * pairs * (3 * d + 2 * dv), b * h * pairs, 2 * io + saved)
        matmul, exp, compulsory = {"fwd": fwd, "bwd": bwd,
                                   "fwd+bwd": tuple(f + g for f, g in zip(fwd, bwd))}[phase]
        if phase == "fwd+bwd":
            compulsory += saved  # the training forward writes them
        exprs = {"pairs_per_head": pairs, "lsh_rows_per_head": hashed, "matmul_flops": matmul, "exp": exp,
                 "compulsory_bytes": compulsory}
        return exprs, {"bs": "block size", "s": "sampled keys", "mu": "min_seq_len", "P": "LSH projections",
                       "L": "causal levels with a HyperAttention quarter"}, assumes


def _forward(p: Hyper, wl: Workload, pairs: int, training: bool) -> list[Op]:
    bh, e, eo = wl.batch * wl.q_heads, wl.element_bytes, wl.output_bytes
    n, d, dv = wl.q_len, wl.qk_head_dim, wl.v_head_dim
    _, hashed, sorted_elems = p._work(n)
    scores, perm = bh * pairs, bh * hashed * INDEX_BYTES
    kept_perm, lse = ({"saved_perm": perm}, {"lse": bh * n * LSE_BYTES}) if training else ({}, {})
    return [
        Op("lsh_hash", "lsh", matmul_flops=2 * bh * hashed * d * p.lsh_projections, side="qk",
           reads={"q": bh * n * d * e, "k": wl.batch * wl.kv_heads * n * d * e}, writes={"buckets": perm}),
        Op("sort", "lsh", other_flops=bh * sorted_elems, reads={"buckets": perm},
           writes={"perm": perm, **kept_perm}),
        Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
           per_pair=True, reads={"q": bh * n * d * e, "k": wl.batch * wl.kv_heads * n * d * e,
                                 "perm": perm}, writes={"p": 0}),
        Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
           other_flops=bh * n * dv, reads={"p": 0, "v": wl.batch * wl.kv_heads * n * dv * e},
           writes={"o": bh * n * dv * eo, **lse}),
    ]


def _backward(p: Hyper, wl: Workload, pairs: int) -> list[Op]:
    bh, e, eo = wl.batch * wl.q_heads, wl.element_bytes, wl.output_bytes
    n, d, dv = wl.q_len, wl.qk_head_dim, wl.v_head_dim
    q, o = bh * n * d * e, bh * n * dv * eo
    k, v = wl.batch * wl.kv_heads * n * d * e, wl.batch * wl.kv_heads * n * dv * e
    io = {"q": {"q": q}, "k": {"k": k}, "v": {"v": v}, "o": {"o": o}, "do": {"do": o},
          "lse": {"lse": bh * n * LSE_BYTES}, "dq": {"dq": q}, "dk": {"dk": k}, "dv": {"dv": v}}
    perm = {"saved_perm": bh * p._work(n)[1] * INDEX_BYTES}
    return attention_backward(io, bh * pairs, bh * n, d, dv, extra_reads=perm)
