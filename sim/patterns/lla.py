"""Local Linear Attention (Zuo et al. 2025, arXiv 2510.01450, ICLR 2026; FlashLLA kernels,
github.com/Yifei-Zuo/FlashLLA ``flashlla/ops/forward.py`` and ``cg.py``).

Each query fits a local linear model to the earlier key-value pairs, weighted by the softmax
kernel ``w_ij = exp(q_i k_j / sqrt(d))``, and outputs its intercept:
``mu_i = sum_j w_ij k_j - omega_i q_i``, ``Sigma_i = sum_j w_ij (k_j - q_i)(k_j - q_i)^T + lambda omega_i I``,
``rho_i = Sigma_i^-1 mu_i``, ``o_i = sum_j w_ij (1 - rho_i (k_j - q_i)) v_j / (omega_i - mu_i rho_i)``.
The ``d x d`` matrix per query (the paper's Theta(n d^2) memory) is never formed: FlashLLA solves
``Sigma_i rho_i = mu_i`` by conjugate gradient, each matrix-vector product streaming the keys
again (``Sigma_i p = sum_j w_ij (p k_j) k_j - ...``, the Theta(n^2 d) primitive). Per query
tile, one fused causal kernel runs

* pass 1 over its keys: ``q k`` (2D), exp, the row sum ``omega`` and ``M = sum w k`` (2D);
* ``cg_iters`` CG iterations (the loop always runs ``cg_max_iters`` times: converged rows only
  zero their step), each over the keys: ``p k`` (2D), ``q k`` recomputed (2D), exp,
  ``sum (w p k) k`` (2D), then ~24 d vector FLOPs per query;
* pass 2 over the keys: ``q k`` (2D), exp, ``rho k`` (2D), ``o += w (1 - rho k + rho q) / delta v`` (2 Dv).

Per (query, key) pair: ``(8 + 6 cg_iters) d + 2 dv`` matmul FLOPs and ``2 + cg_iters`` exps,
versus ``2 d + 2 dv`` and 1 for softmax attention. Causal self-attention only (the kernel masks
``row >= col`` from position 0), forward only: no decode kernel, and the backward (a second CG
solve and two more passes) is not modelled yet.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .axes import BandAxis
from .base import AxisLayout, Flag, Pattern
from .opgraph import Op, build_graph

STAT_BYTES = 4  # fp32 per-row outputs kept for the backward: delta (d), row max (m), omega (w)
# Per-query vector FLOPs (a length-d dot product or axpy = 2d), as the kernel computes them:
CG_INIT = (4, 1)       # y = M - omega q; |r0|^2  (+ lambda * omega)
CG_ITER = (24, 7)      # p.q, p.M, four axpys into Sigma p, |r|^2, p.Sigma p, x, r, |r'|^2, p; alpha, beta, stop test
FINALIZE = (6, 2)      # M - omega q, delta = omega - M.rho (+ eps sign), rho.q


@dataclass(frozen=True)
class LocalLinear(Pattern):
    cg_iters: int = 32  # FlashLLA's cg_max_iters default

    name = "lla"
    causal = True  # not a field: always causal; paper cases compare it with causal softmax attention
    flags = frozenset({"cg_iters", "causal"})
    cli_flags = (Flag("cg_iters", "int", "conjugate-gradient iterations per query (FlashLLA cg_max_iters) "
                                        "[default: 32]"),)

    @classmethod
    def from_flags(cls, f: dict) -> "LocalLinear":
        if f.get("causal") not in (None, "all", "1"):
            raise PatternError("--pattern lla is causal only (FlashLLA masks row >= col): drop --causal or use "
                               "--causal alone")
        return cls(32 if f.get("cg_iters") is None else f["cg_iters"])

    def check(self, wl: Workload) -> None:
        if self.cg_iters < 0:
            raise PatternError(f"--cg-iters must be >= 0, got {self.cg_iters}")
        if wl.phase != "fwd":
            raise PatternError(f"--pattern lla models --phase fwd only, not {wl.phase}: FlashLLA has no decode "
                               "kernel and its backward (a second CG solve) is not modelled yet")
        if wl.q_len != wl.kv_len or (wl.grid is not None and len(wl.grid) > 1):
            raise PatternError("--pattern lla is causal self-attention over a 1D sequence: use --seq, no --kv-seq")
        if wl.qk_head_dim != wl.v_head_dim:
            raise PatternError("--pattern lla needs --v-head-dim equal to --head-dim (FlashLLA uses one HEAD_DIM)")

    def layout(self, wl: Workload) -> AxisLayout:
        return AxisLayout((wl.q_len,), (wl.kv_len,), (BandAxis(left=None, right=0),))

    def params(self) -> dict:
        return {"cg_iters": self.cg_iters}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"LLA: FlashLLA forward, causal, no preconditioner: pass 1 (q k, exp, omega, sum w k), "
                f"{self.cg_iters} CG iterations each streaming the keys (p k, q k, exp, sum w p k k), pass 2 "
                "(q k, exp, rho k, P V); the online-softmax rescales are not counted; writes O and rho, and "
                "fp32 delta, max, omega per row"]

    def op_graph(self, wl: Workload, pairs: int):
        return build_graph(lla_ops(self.cg_iters, wl, pairs))

    # -- closed forms --------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "LocalLinear":
        return cls()

    def formula_values(self, wl: Workload) -> dict:
        return {"Icg": self.cg_iters}

    def closed_form(self, sp, sym: dict, phase: str):
        if phase != "fwd":
            raise PatternError("--pattern lla models --phase fwd only")
        b, h, hkv, n, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "D", "Dv", "e", "eo"))
        cg = sp.Symbol("Icg", nonnegative=True, integer=True)
        pairs = n * (n + 1) / 2
        compulsory = e * b * (2 * h * n * d + hkv * n * (d + dv)) + eo * b * h * n * dv + 3 * STAT_BYTES * b * h * n
        exprs = {"pairs_per_head": sp.factor(pairs),
                 "matmul_flops": sp.factor(b * h * pairs * ((8 + 6 * cg) * d + 2 * dv)),
                 "exp": sp.factor(b * h * pairs * (2 + cg)), "compulsory_bytes": sp.factor(compulsory)}
        return exprs, {"Icg": "LLA conjugate-gradient iterations"}, ("N = M (causal self-attention)",)


def _vector(rows: int, d: int, per_query: tuple[int, int]) -> int:
    return rows * (per_query[0] * d + per_query[1])


def lla_ops(cg: int, wl: Workload, pairs: int) -> list[Op]:
    bh, e, eo = wl.batch * wl.q_heads, wl.element_bytes, wl.output_bytes
    n, d, dv = wl.q_len, wl.qk_head_dim, wl.v_head_dim
    p, rows = bh * pairs, bh * n
    k = wl.batch * wl.kv_heads * n * d * e
    v = wl.batch * wl.kv_heads * n * dv * e
    kernel = "flashlla"
    return [
        # pass 1: scale, running max, subtract, row sum per score (the softmax statistics)
        Op("stats_qk", kernel, matmul_flops=2 * p * d, side="qk", exp=p, other_flops=4 * p, per_pair=True,
           reads={"q": bh * n * d * e, "k": k}, writes={"w": 0}),
        Op("stats_wk", kernel, matmul_flops=2 * p * d, side="pv", per_pair=True, reads={"w": 0}, writes={"mu": 0}),
        Op("cg_init", kernel, other_flops=_vector(rows, d, CG_INIT), reads={"mu": 0}, writes={"cg": 0}),
        # each CG iteration: p k, q k again (scale, subtract, exp), w * (p k), then (w p k) k
        Op("cg_pk", kernel, matmul_flops=2 * cg * p * d, side="qk", per_pair=True, reads={"cg": 0}, writes={"pk": 0}),
        Op("cg_qk", kernel, matmul_flops=2 * cg * p * d, side="qk", exp=cg * p, other_flops=3 * cg * p,
           per_pair=True, reads={"pk": 0}, writes={"wpk": 0}),
        Op("cg_sigma_p", kernel, matmul_flops=2 * cg * p * d, side="pv", per_pair=True, reads={"wpk": 0},
           writes={"sigma_p": 0}),
        Op("cg_vector", kernel, other_flops=cg * _vector(rows, d, CG_ITER), reads={"sigma_p": 0}, writes={"rho": 0}),
        Op("finalize", kernel, other_flops=_vector(rows, d, FINALIZE), reads={"rho": 0},
           writes={"delta": 0, "r": bh * n * d * e, "stats": 3 * STAT_BYTES * rows}),
        # pass 2: scale, subtract, exp; 1 - rho k + rho q; times w / delta; then P V
        Op("out_qk", kernel, matmul_flops=2 * p * d, side="qk", exp=p, other_flops=2 * p, per_pair=True,
           reads={"delta": 0}, writes={"w2": 0}),
        Op("out_rk", kernel, matmul_flops=2 * p * d, side="qk", other_flops=4 * p, per_pair=True,
           reads={"w2": 0}, writes={"s": 0}),
        Op("out_pv", kernel, matmul_flops=2 * p * dv, side="pv", per_pair=True, reads={"s": 0, "v": v},
           writes={"o": rows * dv * eo}),
    ]
