"""Low-rank attention (Linformer, Wang et al. 2020, arXiv 2006.04768, Sec. 4, eq. 7).

Keys and values are projected along the sequence to ``rank`` rows by learned ``E, F`` of shape
``(rank, M)``: ``K' = E K``, ``V' = F V``; every query then attends the ``rank`` projected rows,
``O = softmax(Q K'^T / sqrt(d)) V'``: ``N x rank`` scores instead of ``N x M``. Ops: the two
projections (``2 rank M D`` and ``2 rank M Dv`` FLOPs per KV head), then a fused attention over
the projected rows.

Non-causal only: each projected row mixes all M keys, future ones included, so no mask on the
``N x rank`` scores can hide the future from a query (Linformer is an encoder method); for the
same reason it has no KV cache and no decode. It trains: the backward is FlashAttention-2 style
over the ``N x rank`` scores, then the projections' backward (``dK = E^T dK'``, ``dE = dK' K^T``,
and the same for V, F).

Assumptions (said in ``assumptions``): one ``E`` and one ``F`` per layer shared by every head and
batch (Linformer's headwise sharing), read once; the forward saves ``K'``, ``V'`` and the LSE for
the backward (autograd keeps the attention inputs).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .base import Flag, Pattern
from .opgraph import LSE_BYTES, Op, build_graph



@dataclass(frozen=True)
class LowRank(Pattern):
    rank: int

    name = "lowrank"
    tileable = False  # the N x rank scores are not a mask over the N x M problem
    flags = frozenset({"rank", "causal"})
    cli_flags = (Flag("rank", "int", "keys/values projected along the sequence to this many rows (Linformer k)"),)

    @classmethod
    def from_flags(cls, f: dict) -> "LowRank":
        if f.get("causal") not in (None, "0"):
            raise PatternError("--causal does not apply to --pattern lowrank: each projected key mixes all keys, "
                               "future ones included, so no causal mask exists (Linformer is non-causal)")
        if f.get("rank") is None:
            raise PatternError("--pattern lowrank needs --rank (projected rows, e.g. --rank 256)")
        return cls(rank=f["rank"])

    def check(self, wl: Workload) -> None:
        if self.rank <= 0:
            raise PatternError(f"--rank must be positive, got {self.rank}")
        if self.rank > wl.kv_len:
            raise PatternError(f"--rank {self.rank} exceeds the {wl.kv_len} keys it projects: use --rank <= "
                               f"{wl.kv_len} (at --rank {wl.kv_len} dense attention is cheaper)")
        if wl.phase == "decode":
            raise PatternError("--pattern lowrank has no --phase decode: E projects the whole sequence, so there "
                               "is no KV cache to extend; use fwd, bwd or fwd+bwd")

    def layout(self, wl: Workload):
        raise PatternError("lowrank attention has no (query, key) mask: queries attend projected rows")

    def params(self) -> dict:
        return {"rank": self.rank}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["Linformer: K' = E K, V' = F V with one (rank x M) E and F per layer shared by heads and batch "
                "(read once); attention over the rank projected rows, FlashAttention-2 style backward; the "
                "forward saves K', V' and the LSE for the backward"]

    def pairs_per_head(self, wl: Workload) -> int:
        return wl.q_len * self.rank

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len

    def op_graph(self, wl: Workload, pairs: int):
        training = wl.phase == "fwd+bwd"
        ops = [] if wl.phase == "bwd" else forward_ops(self.rank, wl, saves=training)
        if wl.phase != "fwd":
            ops += backward_ops(self.rank, wl, prefix="bwd_" if training else "")
        return build_graph(ops)

    # -- closed forms --------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "LowRank":
        return cls(rank=1)

    def formula_values(self, wl: Workload) -> dict:
        return {"k": self.rank}

    def closed_form(self, sp, sym: dict, phase: str):
        if phase == "decode":
            raise PatternError("--pattern lowrank has no --phase decode (no KV cache)")
        b, h, hkv, n, m, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo"))
        k = sp.Symbol("k", positive=True, integer=True)
        attention = 2 * b * h * n * k * (d + dv)       # Q K'^T and P V'
        projection = 2 * b * hkv * k * m * (d + dv)    # E K and F V
        q, o, lse = e * b * h * n * d, eo * b * h * n * dv, LSE_BYTES * b * h * n
        kv, ef, saved = e * b * hkv * m * (d + dv), 2 * e * k * m, e * b * hkv * k * (d + dv)
        fwd = (attention + projection, b * h * n * k, q + kv + ef + o)
        # backward: FA2 over the rank rows (S, dQ, dK' over D; dV', dP over Dv), then dK, dE, dV, dF;
        # reads Q, K, V, E, F, K', V', O, dO, LSE, writes dQ, dK, dV, dE, dF
        bwd = (2 * b * h * n * k * (3 * d + 2 * dv) + 2 * projection, b * h * n * k,
               2 * (q + kv + ef) + saved + 2 * o + lse)
        matmul, exp, compulsory = {
            "fwd": fwd, "bwd": bwd,
            "fwd+bwd": (fwd[0] + bwd[0], 2 * b * h * n * k, fwd[2] + saved + lse + bwd[2]),
        }[phase]
        exprs = {"pairs_per_head": n * k, "matmul_flops": sp.factor(matmul), "exp": exp,
                 "compulsory_bytes": sp.factor(compulsory)}
        return exprs, {"k": "Linformer rank (projected rows)"}, ("k <= M",)


def _sizes(rank: int, wl: Workload) -> dict:
    """Bytes of each tensor the ops move."""
    b, h, hkv, e, eo = wl.batch, wl.q_heads, wl.kv_heads, wl.element_bytes, wl.output_bytes
    n, m, d, dv = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
    return {"q": b * h * n * d * e, "k": b * hkv * m * d * e, "v": b * hkv * m * dv * e,
            "E": rank * m * e, "F": rank * m * e, "o": b * h * n * dv * eo,
            "k_proj": b * hkv * rank * d * e, "v_proj": b * hkv * rank * dv * e, "lse": b * h * n * LSE_BYTES}


def forward_ops(rank: int, wl: Workload, saves: bool) -> list[Op]:
    """Projections, then one fused attention over the rank rows; ``saves``: training keeps K', V',
    LSE in HBM for the backward (K', V' are written by the projection kernel either way)."""
    s, bh, bhkv = _sizes(rank, wl), wl.batch * wl.q_heads, wl.batch * wl.kv_heads
    n, m, d, dv = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
    scores = bh * n * rank
    saved_k = {"k_proj_saved": s["k_proj"]} if saves else {}
    saved_v = {"v_proj_saved": s["v_proj"]} if saves else {}
    return [
        Op("project_k", "project", matmul_flops=2 * bhkv * rank * m * d, side="qk",
           reads={"k": s["k"], "E": s["E"]}, writes={"k_proj": s["k_proj"], **saved_k}),
        Op("project_v", "project", matmul_flops=2 * bhkv * rank * m * dv, side="pv",
           reads={"v": s["v"], "F": s["F"]}, writes={"v_proj": s["v_proj"], **saved_v}),
        Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
           per_pair=True, reads={"q": s["q"], "k_proj": s["k_proj"]}, writes={"p": 0}),
        Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", other_flops=bh * n * dv, per_pair=True,
           reads={"p": 0, "v_proj": s["v_proj"]}, writes={"o": s["o"], **({"lse": s["lse"]} if saves else {})}),
    ]


def backward_ops(rank: int, wl: Workload, prefix: str) -> list[Op]:
    """FlashAttention-2 backward over the N x rank scores, then the projections' backward."""
    s, bh, bhkv = _sizes(rank, wl), wl.batch * wl.q_heads, wl.batch * wl.kv_heads
    n, m, d, dv = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
    scores = bh * n * rank
    t = {name: prefix + name for name in ("q", "k", "v", "E", "F", "o", "do", "lse", "k_proj", "v_proj", "p",
                                          "dp", "ds", "dq", "dk_proj", "dv_proj", "dk", "dv", "dE", "dF")}
    attention = "attention_bwd"
    return [
        Op(prefix + "qk_recompute", attention, matmul_flops=2 * scores * d, side="qk", exp=scores, per_pair=True,
           reads={t["q"]: s["q"], t["k_proj"]: s["k_proj"], t["lse"]: s["lse"]}, writes={t["p"]: 0}),
        Op(prefix + "dv_proj", attention, matmul_flops=2 * scores * dv, side="pv", per_pair=True,
           reads={t["p"]: 0, t["do"]: s["o"]}, writes={t["dv_proj"]: s["v_proj"]}),
        Op(prefix + "dp", attention, matmul_flops=2 * scores * dv, side="pv", per_pair=True,
           reads={t["do"]: s["o"], t["v_proj"]: s["v_proj"]}, writes={t["dp"]: 0}),
        # recompute's scale + subtract and dS = P * (dP - delta) per score; delta = rowsum(dO * O)
        Op(prefix + "ds", attention, other_flops=4 * scores + 2 * bh * n * dv, per_pair=True,
           reads={t["p"]: 0, t["dp"]: 0, t["o"]: s["o"]}, writes={t["ds"]: 0}),
        Op(prefix + "dq", attention, matmul_flops=2 * scores * d, side="qk", per_pair=True,
           reads={t["ds"]: 0}, writes={t["dq"]: s["q"]}),
        Op(prefix + "dk_proj", attention, matmul_flops=2 * scores * d, side="qk", per_pair=True,
           reads={t["ds"]: 0}, writes={t["dk_proj"]: s["k_proj"]}),
        Op(prefix + "dk", "project_bwd", matmul_flops=2 * bhkv * m * rank * d, side="qk",
           reads={t["dk_proj"]: s["k_proj"], t["E"]: s["E"]}, writes={t["dk"]: s["k"]}),
        Op(prefix + "dE", "project_bwd", matmul_flops=2 * bhkv * rank * m * d, side="qk",
           reads={t["dk_proj"]: s["k_proj"], t["k"]: s["k"]}, writes={t["dE"]: s["E"]}),
        Op(prefix + "dv", "project_bwd", matmul_flops=2 * bhkv * m * rank * dv, side="pv",
           reads={t["dv_proj"]: s["v_proj"], t["F"]: s["F"]}, writes={t["dv"]: s["v"]}),
        Op(prefix + "dF", "project_bwd", matmul_flops=2 * bhkv * rank * m * dv, side="pv",
           reads={t["dv_proj"]: s["v_proj"], t["v"]: s["v"]}, writes={t["dF"]: s["F"]}),
    ]
