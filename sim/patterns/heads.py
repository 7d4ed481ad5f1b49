"""Patterns that change which heads attend: SQA (fewer query heads) and MoH (per-token heads).

- SQA, Sparse Query Attention (Filipek 2025, arXiv 2510.01817 §3.2-3.3): the layer keeps
  ``Hq < H`` query heads of the baseline's head dim; its ``Hkv <= Hq`` K/V heads are repeated
  ``G = Hq / Hkv`` times. Reverse SQA (§6, ``Hq < Hkv``) repeats the *queries* to ``Hkv`` heads,
  so the cost scales with ``Hkv``. The mask is dense or causal, so SQA is that mask on a
  workload with ``max(Hq, Hkv)`` query heads (``effective_workload``); the baseline keeps ``H``.
- MoH, Mixture-of-Head attention (Jin et al. 2024, arXiv 2410.11842 §3.2; SkyworkAI/MoH
  ``MoH-DiT/models.py``): ``S`` shared heads are always on; a router ``W_r x_t`` (``H - S``
  logits, softmax) picks the top ``K`` routed heads per token; with shared heads, ``W_s x_t``
  (``S`` logits) and ``W_h x_t`` (2 logits) weight the two groups. ``K`` does not count the
  shared heads: each token's query attends in exactly ``A = S + K`` heads, so pairs summed over
  heads are exact even though which heads is data-dependent.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .base import Flag, Pattern
from .flagvals import causal_switch
from .library import Causal, Dense
from .opgraph import ID_BYTES, Op, build_graph

GATE_BYTES = 4  # fp32 head gate
# Router softmax per logit: running max, subtract, row sum, divide (exp counted apart).
ROUTER_SOFTMAX_OPS = 4


def _mask(causal: bool) -> Pattern:
    return Causal() if causal else Dense()


@dataclass(frozen=True)
class SQA(Pattern):
    """Sparse Query Attention (arXiv 2510.01817 Eq. 4-9): ``query_heads`` query heads instead of
    the workload's ``heads``; reverse SQA (§6) when fewer than the KV heads."""

    query_heads: int
    causal: bool = False

    name = "sqa"
    flags = frozenset({"query_heads", "causal"})
    cli_flags = (Flag("query_heads", "int", "query heads SQA runs (--heads is the MHA/GQA baseline's)."),)

    def check(self, wl: Workload) -> None:
        hq, h, hkv = self.query_heads, wl.q_heads, wl.kv_heads
        if hq <= 0:
            raise PatternError(f"--query-heads must be positive, got {hq}")
        if hq > h:
            raise PatternError(f"--query-heads {hq} exceeds --heads {h}: SQA keeps at most the baseline's "
                               f"query heads (use --query-heads <= {h})")
        if hq % hkv and hkv % hq:
            raise PatternError(f"--query-heads {hq} and --kv-heads {hkv}: one must divide the other (K/V "
                               "heads are repeated Hq/Hkv times, or queries Hkv/Hq times in reverse SQA)")

    def effective_workload(self, wl: Workload) -> Workload:
        # reverse SQA (Hq < Hkv) repeats the queries up to Hkv heads (arXiv 2510.01817 §6)
        return wl.with_(q_heads=max(self.query_heads, wl.kv_heads))

    def layout(self, wl: Workload):
        return _mask(self.causal).layout(wl)

    def params(self) -> dict:
        return {"query_heads": self.query_heads, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        notes = [f"SQA: the kernel runs {wl.q_heads} query heads of the baseline's head dim (dense baseline: "
                 "the workload's --heads); K/V heads repeated to match (GQA-style, arXiv 2510.01817 §3.2)"]
        if self.query_heads < wl.kv_heads:
            notes.append(f"reverse SQA: --query-heads {self.query_heads} < --kv-heads {wl.kv_heads}, queries "
                         f"repeated to {wl.kv_heads} heads, so the cost scales with Hkv (§6)")
        return notes + _mask(self.causal).assumptions(wl)

    @classmethod
    def from_flags(cls, f: dict) -> "SQA":
        if f["query_heads"] is None:
            raise PatternError("--pattern sqa needs --query-heads (e.g. --heads 16 --kv-heads 4 --query-heads 4)")
        return cls(query_heads=f["query_heads"], causal=causal_switch(f, "sqa"))

    # -- closed forms: the dense/causal ones with H -> max(Hq, Hkv) ------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "SQA":
        return cls(query_heads=1, causal=causal)

    def formula_values(self, wl: Workload) -> dict:
        return {"Hq": self.query_heads}

    def closed_form(self, sp, sym: dict, phase: str):
        from ..formulas import formula  # lazy: attnsim.formulas imports this package

        base = formula(_mask(self.causal), phase)
        runs = sp.Max(sp.Symbol("Hq", positive=True, integer=True), sym["Hkv"])
        exprs = {k: sp.factor(v.subs(sym["H"], runs)) for k, v in base.exprs.items()}
        meanings = {"Hq": "SQA query heads (--query-heads); the kernel runs max(Hq, Hkv) heads"}
        return exprs, meanings, (*base.assumes, "Hq divides Hkv or Hkv divides Hq")


@dataclass(frozen=True)
class MoH(Pattern):
    """Mixture-of-Head attention (arXiv 2410.11842 §3.2 Eq. 5-6): every token attends in its
    ``shared_heads`` plus the top ``active_heads`` of the ``H - shared_heads`` routed heads."""

    active_heads: int
    shared_heads: int = 0
    causal: bool = False

    name = "moh"
    tileable = False  # which heads a query uses is data-dependent
    flags = frozenset({"active_heads", "shared_heads", "causal"})
    cli_flags = (
        Flag("active_heads", "int", "routed heads each token activates (top-k; shared heads not included)."),
        Flag("shared_heads", "int", "heads every token uses [default: 0]."),
    )

    def check(self, wl: Workload) -> None:
        k, s, h = self.active_heads, self.shared_heads, wl.q_heads
        if k <= 0:
            raise PatternError(f"--active-heads must be positive, got {k} (each token's top-k routed heads)")
        if s < 0:
            raise PatternError(f"--shared-heads must be >= 0, got {s}")
        if k > h - s:
            raise PatternError(f"--active-heads {k} exceeds the {h - s} routed heads (--heads {h} minus "
                               f"--shared-heads {s}): use --active-heads <= {max(h - s, 0)}")
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError("--pattern moh models --phase fwd and decode; its backward (attention and router "
                               "gradients) is not modelled yet")

    def layout(self, wl: Workload):
        raise PatternError("moh's per-head query sets are data-dependent (token routing): no per-dimension "
                           "layout and no tile counts")

    def params(self) -> dict:
        return {"active_heads": self.active_heads, "shared_heads": self.shared_heads, "causal": int(self.causal)}

    @property
    def heads_per_token(self) -> int:
        return self.active_heads + self.shared_heads

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"MoH: each token attends in {self.heads_per_token} of {wl.q_heads} heads ({self.shared_heads} "
                f"shared + top-{self.active_heads} routed); pairs per head is the average over heads "
                "(arXiv 2410.11842 §3.2)",
                f"MoH router: softmax(W_r x) over the routed heads, plus W_s x and W_h x when shared heads exist, "
                f"x of width heads x head dim = {wl.q_heads * wl.qk_head_dim} (inferred: d_model = H D); one "
                "compare per routed logit for top-k, one multiply per active gate",
                "MoH: Q/K/V projections of every head are computed (not counted, as for every pattern); the "
                "attention reads Q only of active (token, head) rows and writes their outputs; K/V of every "
                "KV head are read, except one query token with MHA (exactly its active heads)"]

    def pairs_per_head(self, wl: Workload):
        """Average over the workload's heads of the exact total ``A x (mask pairs)``: an int when
        the heads divide it, else a float (the total, ``attended_pairs``, is exact either way)."""
        total = self.heads_per_token * _mask(self.causal).pairs_per_head(wl)
        return total // wl.q_heads if total % wl.q_heads == 0 else total / wl.q_heads

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len

    def router_rows(self, wl: Workload) -> int:
        """Router logits per token: W_r (routed heads), plus W_s and the 2-way W_h with shared heads."""
        return wl.q_heads + (2 if self.shared_heads else 0)

    def kv_heads_read(self, wl: Workload) -> int:
        # one query token of MHA touches exactly its active heads; otherwise every KV head is
        # some token's choice in general (which ones is data-dependent), so all are charged
        single = wl.q_len == 1 and wl.kv_heads == wl.q_heads
        return self.heads_per_token if single else wl.kv_heads

    def op_graph(self, wl: Workload, pairs):
        e, eo, b, h, n, m = wl.element_bytes, wl.output_bytes, wl.batch, wl.q_heads, wl.q_len, wl.kv_len
        d, dv, a, k = wl.qk_head_dim, wl.v_head_dim, self.heads_per_token, self.active_heads
        d_model, rows = h * d, self.router_rows(wl)
        scores = b * a * _mask(self.causal).pairs_per_head(wl)  # exact: A heads per query
        kv = b * self.kv_heads_read(wl) * m
        logits = b * n * rows
        return build_graph([
            Op("router", "router", matmul_flops=2 * logits * d_model, side="qk", exp=logits,
               other_flops=ROUTER_SOFTMAX_OPS * logits,
               reads={"x": b * n * d_model * e, "w_router": rows * d_model * e}, writes={"logits": 0}),
            Op("top_k", "router", other_flops=b * n * (h - self.shared_heads + a), reads={"logits": 0},
               writes={"head_ids": b * n * k * ID_BYTES, "head_gates": b * n * a * GATE_BYTES}),
            Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
               per_pair=True, reads={"q": b * n * a * d * e, "k": kv * d * e, "head_ids": b * n * k * ID_BYTES},
               writes={"p": 0}),
            # O / l, then the weighted sum: one gate multiply per output element
            Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
               other_flops=2 * b * n * a * dv,
               reads={"p": 0, "v": kv * dv * e, "head_gates": b * n * a * GATE_BYTES},
               writes={"o": b * n * a * dv * eo}),
        ])

    @classmethod
    def from_flags(cls, f: dict) -> "MoH":
        if f["active_heads"] is None:
            raise PatternError("--pattern moh needs --active-heads (routed heads per token, e.g. "
                               "--heads 16 --active-heads 4 --shared-heads 8)")
        return cls(active_heads=f["active_heads"], shared_heads=f["shared_heads"] or 0,
                   causal=causal_switch(f, "moh"))

    # -- closed forms ------------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "MoH":
        return cls(active_heads=1, shared_heads=1, causal=causal)

    def formula_values(self, wl: Workload) -> dict:
        return {"K": self.active_heads, "S": self.shared_heads}

    def closed_form(self, sp, sym: dict, phase: str):
        from ..formulas import formula  # lazy: attnsim.formulas imports this package

        if phase in ("bwd", "fwd+bwd"):
            raise PatternError("--pattern moh models --phase fwd and decode only")
        b, h, hkv, n, m, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo"))
        k = sp.Symbol("K", positive=True, integer=True)
        s = sp.Symbol("S", integer=True, nonnegative=True)
        base = formula(_mask(self.causal), phase)
        mask_pairs, a = base.exprs["pairs_per_head"], k + s
        rows = sp.Piecewise((h + 2, s > 0), (h, True))
        kv_heads = sp.Piecewise((a, sp.Eq(n, 1) & sp.Eq(hkv, h)), (hkv, True))
        logits = b * n * rows
        compulsory = (e * (b * n * h * d + rows * h * d + b * n * a * d + b * kv_heads * m * (d + dv))
                      + eo * b * n * a * dv)
        exprs = {"pairs_per_head": a * mask_pairs / h,
                 "matmul_flops": 2 * logits * h * d + 2 * b * a * mask_pairs * (d + dv),
                 "exp": logits + b * a * mask_pairs,
                 "compulsory_bytes": compulsory}
        meanings = {"K": "MoH routed heads per token (--active-heads)", "S": "MoH shared heads (--shared-heads)"}
        return exprs, meanings, (*base.assumes, "router width d_model = H D")
