"""LongVQ's vector-quantised attention (Liu et al. 2024, arXiv 2404.11163, IJCAI 2024), counted
as Transformer-VQ computes it (Lingle 2023, arXiv 2309.16354; github.com/transformer-vq/
transformer_vq, ``nn/vq.py`` and ``nn/attn.py``), whose codebook notation (``S`` codewords,
``z = argmin_s |k - C_s|^2``, ``k_hat = C_z``) LongVQ uses. Inferred: LongVQ's full text was not
reachable here, so its attention is taken to be Transformer-VQ's; its gated SSM (a MEGA-style
EMA on the layer input) sits outside attention and is not counted.

Keys are quantised against a per-head codebook of ``S`` codewords (distances of every key to
every codeword, then an argmin). Non-causal: every query attends the ``S`` codewords with a
``log(count)`` bias and the mean value of the keys with that code, which equals softmax
attention over all quantised keys, in ``O(N S)``. Causal (``--block-size L``, the block
recurrence): a block of ``L`` queries attends the quantised keys of its own and the previous
block (``W = 2L`` scores with Transformer-XL relative position biases, causally masked but
computed whole) plus the codebook cache of every earlier block; after each block, the block
before it is added to the cache (one-hot counts and a one-hot ``S x L`` by ``L x Dv`` matmul).
Per query ``S + 2L`` scores: linear in ``N``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .base import Flag, Pattern
from .flagvals import causal_switch, one_block
from .opgraph import Op, build_graph

CODE_BYTES = 4   # int32 code per key
CACHE_BYTES = 4  # fp32 counts and value sums


@dataclass(frozen=True)
class LongVQ(Pattern):
    codebook: int
    block_size: int | None = None  # causal block length L; None for the non-causal form
    causal: bool = True

    name = "longvq"
    tileable = False
    flags = frozenset({"codebook", "block_size", "causal"})
    cli_flags = (Flag("codebook", "int", "codewords per head the keys are quantised to (Transformer-VQ S)"),)

    @classmethod
    def from_flags(cls, f: dict) -> "LongVQ":
        if f.get("codebook") is None:
            raise PatternError("--pattern longvq needs --codebook (codewords per head, e.g. 512)")
        causal = causal_switch(f, "longvq", default=True)
        block = one_block(f, "longvq", 512)
        if causal and block is None:
            raise PatternError("causal --pattern longvq needs --block-size (its block length L, e.g. 512)")
        if not causal and block is not None:
            raise PatternError("--block-size applies to causal longvq only: the non-causal form attends the codebook")
        return cls(f["codebook"], block, causal)

    def check(self, wl: Workload) -> None:
        if self.codebook <= 0:
            raise PatternError(f"--codebook must be positive, got {self.codebook}")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern longvq is for 1D sequences: use --seq, not --tokens")
        if wl.phase != "fwd":
            raise PatternError(f"--pattern longvq models --phase fwd only, not {wl.phase}")
        if not self.causal:
            return
        if self.block_size is None or self.block_size <= 0:
            raise PatternError(f"causal --pattern longvq needs a positive --block-size, got {self.block_size}")
        if wl.q_len != wl.kv_len:
            raise PatternError("causal --pattern longvq is self-attention: no --kv-seq")
        if wl.q_len % self.block_size:
            raise PatternError(f"--block-size {self.block_size} must divide the {wl.q_len} tokens (the block "
                               "recurrence runs whole blocks)")

    def layout(self, wl: Workload):
        raise PatternError("longvq has no (query, key) mask: queries attend codewords and a block window")

    def params(self) -> dict:
        return {"codebook": self.codebook, "block_size": self.block_size, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["LongVQ attention counted as Transformer-VQ (inferred; LongVQ's SSM/EMA outside attention not "
                "counted): VQ distances |k|^2 - 2 k.c + |c|^2 to every codeword and an argmin; codebook cache as "
                "one-hot counts and value sums (per block: S x Dv divisions, S logs); causal blocks also attend "
                "the previous and own block (2L keys, Transformer-XL position bias, computed whole)"]

    # -- exact counts --------------------------------------------------------------------
    def window(self) -> int:
        return 2 * self.block_size if self.causal else 0

    def pairs_per_head(self, wl: Workload) -> int:
        return wl.q_len * (self.codebook + self.window())

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len

    def op_graph(self, wl: Workload, pairs: int):
        return build_graph(longvq_ops(self, wl))

    # -- closed forms --------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "LongVQ":
        return cls(codebook=1, block_size=1 if causal else None, causal=causal)

    def formula_values(self, wl: Workload) -> dict:
        return {"S": self.codebook, "L": self.block_size or 0}

    def closed_form(self, sp, sym: dict, phase: str):
        if phase != "fwd":
            raise PatternError("--pattern longvq models --phase fwd only")
        b, h, hkv, n, m, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo"))
        s, blk = sp.symbols("S L", positive=True, integer=True)
        w = 2 * blk if self.causal else 0
        assign, aggregate = 2 * b * hkv * m * s * d, 2 * b * hkv * m * s * dv  # k.c and one-hot sums
        attention = 2 * b * h * n * (s + w) * (d + dv) + (2 * b * h * n * w * d if self.causal else 0)  # + XL bias
        compulsory = (e * (b * h * n * d + b * hkv * m * (d + dv) + hkv * s * d) + eo * b * h * n * dv
                      + (e * h * (w + 2) * d if self.causal else 0))
        exprs = {"pairs_per_head": n * (s + w), "matmul_flops": sp.factor(assign + aggregate + attention),
                 "exp": b * h * n * (s + w), "compulsory_bytes": sp.expand(compulsory)}
        meanings = {"S": "codewords per head", "L": "block length (causal)"}
        return exprs, meanings, (("N = M, L divides N",) if self.causal else ())


def longvq_ops(p: LongVQ, wl: Workload) -> list[Op]:
    b, h, hkv, e, eo = wl.batch, wl.q_heads, wl.kv_heads, wl.element_bytes, wl.output_bytes
    n, m, d, dv, s = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim, p.codebook
    w = p.window()
    blocks = m // p.block_size if p.causal else 1  # cache updates
    bh, bhkv = b * h, b * hkv
    cache = bhkv * blocks * s * (dv + 1) * CACHE_BYTES
    codebook = hkv * s * d * e
    q, v, o = bh * n * d * e, bhkv * m * dv * e, bh * n * dv * eo
    scores = bh * n * (s + w)
    ops = [
        # |k|^2 and |c|^2, then |k|^2 - 2 k.c + |c|^2 and an argmin over S per key
        Op("vq_assign", "vq", matmul_flops=2 * bhkv * m * s * d, side="qk",
           other_flops=2 * bhkv * (m + s) * d + bhkv * m * (4 * s - 1),
           reads={"k": bhkv * m * d * e, "codebook": codebook}, writes={"codes": bhkv * m * CODE_BYTES}),
        # one-hot counts and value sums per code; per block: mean values (S x Dv divisions), log counts
        Op("aggregate", "vq", matmul_flops=2 * bhkv * m * s * dv, side="pv",
           other_flops=bhkv * (m * s + blocks * s * (dv + 1)),
           reads={"codes": bhkv * m * CODE_BYTES, "v": v}, writes={"cache": cache}),
        Op("cache_qk", "attention", matmul_flops=2 * bh * n * s * d, side="qk", other_flops=bh * n * s,
           reads={"q": q, "codebook": codebook, "cache": cache}, writes={"s_cache": 0}),
    ]
    if p.causal:  # quantised keys of the previous and own block, with Transformer-XL position biases
        ops += [
            Op("recent_qk", "attention", matmul_flops=2 * bh * n * w * d, side="qk",
               reads={"q": q, "codes": bhkv * m * CODE_BYTES}, writes={"s_recent": 0}),
            Op("recent_pos", "attention", matmul_flops=2 * bh * n * w * d, side="qk",
               other_flops=2 * bh * n * d + bh * n * w, reads={"s_recent": 0, "xl_bias": e * h * (w + 2) * d},
               writes={"s_pos": 0}),
        ]
    ops += [
        Op("softmax", "attention", exp=scores, other_flops=4 * scores, reads={"s_cache": 0, **({"s_pos": 0} if
           p.causal else {})}, writes={"p": 0}),
        Op("cache_pv", "attention", matmul_flops=2 * bh * n * s * dv, side="pv", reads={"p": 0, "cache": cache},
           writes={"o_cache": 0}),
    ]
    if p.causal:
        ops.append(Op("recent_pv", "attention", matmul_flops=2 * bh * n * w * dv, side="pv",
                      reads={"p": 0, "v": v}, writes={"o_recent": 0}))
    ops.append(Op("combine", "attention", other_flops=bh * n * dv if p.causal else 0,
                  reads={"o_cache": 0, **({"o_recent": 0} if p.causal else {})}, writes={"o": o}))
    return ops
