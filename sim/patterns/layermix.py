"""Layer-level hybrids: some layers run full attention, the rest attend ``top_k`` keys per query
(DELTA, HyLRA, Flux Attention), priced as the average layer of an ``layers``-deep stack.

Layer plan (counts only depend on how many layers of each kind there are): the first
``full_layers - selection_layers`` layers are full; then each of the ``selection_layers`` layers
runs full attention *and* picks the top-k keys of every query from the scores it computed (one
compare per score), and the sparse layers after it, until the next selection layer, attend those
keys with no selection cost of their own (HyLRA reuses the previous layer's indices; DELTA's
"Δ-layers" select for the layers that follow). With no selection layer the sparse layers run a
fixed top_k-key pattern (Flux Attention's streaming layers: sink + window keys).

A causal query attends min(top_k, visible keys) in a sparse layer. Every layer is its own op
group in the graph; each op carries its layer's counts divided by ``layers``, so the graph sums
to the per-layer average of the stack (a float) and compares with one dense layer;
:meth:`LayerMix.stack_sums` gives the exact integer totals over the stack.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .base import Flag, Pattern
from .flagvals import causal_switch, int_flag
from .opgraph import Op, build_graph
from .opgraph import ID_BYTES
from .selection import causal_capped_sum, causal_capped_sum_sym


@dataclass(frozen=True)
class LayerMix(Pattern):
    """DELTA (arXiv 2510.09883, github hoenza/DELTA: ``full_cache_layers``, planner layers = full
    layers followed by a non-full one, ``subset_cache_size`` pages of 16 tokens for the others),
    HyLRA (arXiv 2602.00777: full layers, tolerant layers reuse the previous layer's top-k), Flux
    Attention (arXiv 2604.07394, github qqtang-code/FluxAttention: a per-input layer router sends
    each layer to full or streaming attention of sink + window keys)."""

    layers: int
    full_layers: int
    top_k: int
    selection_layers: int = 0
    causal: bool = False

    name = "layer-mix"
    tileable = False
    flags = frozenset({"layers", "full_layers", "top_k", "selection_layers", "causal"})
    cli_flags = (Flag("layers", "int", "layers in the model stack priced as its average layer."),
                 Flag("full_layers", "int", "layers running full attention (selection layers included)."),
                 Flag("selection_layers", "int", "full layers that also pick the top-k keys later layers "
                      "reuse [default: 0]."))

    @classmethod
    def from_flags(cls, f: dict) -> "LayerMix":
        for flag in ("layers", "full_layers", "top_k"):
            if int_flag(f, flag) is None:
                raise PatternError(f"--pattern layer-mix needs --{flag.replace('_', '-')} "
                                   "(e.g. --layers 28 --full-layers 5 --top-k 1024)")
        return cls(f["layers"], f["full_layers"], f["top_k"], int_flag(f, "selection_layers", 0),
                   causal_switch(f, "layer-mix"))

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "LayerMix":
        return cls(layers=2, full_layers=1, top_k=1, selection_layers=1, causal=causal)

    def check(self, wl: Workload) -> None:
        if self.layers < 1:
            raise PatternError(f"--layers must be at least 1, got {self.layers}")
        if not 0 <= self.full_layers <= self.layers:
            raise PatternError(f"--full-layers {self.full_layers} must be between 0 and --layers {self.layers}")
        sparse = self.layers - self.full_layers
        if not 0 <= self.selection_layers <= min(self.full_layers, sparse):
            raise PatternError(f"--selection-layers {self.selection_layers} must be between 0 and --full-layers "
                               f"{self.full_layers}, and at most the {sparse} sparse layers (each feeds one or more)")
        if not 1 <= self.top_k <= wl.kv_len:
            raise PatternError(f"--top-k {self.top_k} must be between 1 and the {wl.kv_len} keys")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern layer-mix is for 1D sequences: use --seq, not --tokens")
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError(f"--pattern layer-mix models inference (--phase fwd, decode), not {wl.phase}")
        if self.causal and wl.q_len > wl.kv_len:
            raise PatternError("causal --pattern layer-mix needs at most as many queries as keys")

    def layout(self, wl: Workload):
        raise PatternError("layer-mix mixes layers with run-time key selection: no per-dimension layout")

    def params(self) -> dict:
        return {"layers": self.layers, "full_layers": self.full_layers, "top_k": self.top_k,
                "selection_layers": self.selection_layers, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"layer-mix: {self.layers} layers = {self.full_layers - self.selection_layers} full + "
                f"{self.selection_layers} full with top-k selection (one compare per score) + "
                f"{self.layers - self.full_layers} sparse of min({self.top_k}, visible) keys per query; counts "
                "are the per-layer average of the stack",
                "layer-mix: a sparse layer reads min(M, N * top_k) keys per KV head (its query heads share the "
                "selection, as DELTA's per-sequence pages); routers and the model's other ops are not counted"]

    # -- exact sums per layer kind and over the stack ----------------------------------------
    def per_layer(self, wl: Workload) -> dict:
        nq, nkv, k = wl.q_len, wl.kv_len, self.top_k
        full = causal_capped_sum(nq, nkv, nkv) if self.causal else nq * nkv
        sparse = causal_capped_sum(nq, nkv, k) if self.causal else nq * k
        return {"full": full, "sparse": sparse, "sparse_keys": min(nkv, nq * k)}

    def plan(self) -> list[tuple[str, int | None]]:
        """(kind, index of the selection layer whose top-k it reuses) for every layer in order."""
        first = self.full_layers - self.selection_layers
        out: list[tuple[str, int | None]] = [("full", None)] * first
        sparse, sel = self.layers - self.full_layers, self.selection_layers
        if not sel:
            return out + [("sparse", None)] * sparse
        for i in range(sel):
            out.append(("select", None))
            out += [("sparse", len(out) - 1)] * (sparse // sel + (i < sparse % sel))
        return out

    def stack_sums(self, wl: Workload) -> dict:
        """Exact totals over the stack, per (batch, head): pairs and selection compares."""
        p, sparse_layers = self.per_layer(wl), self.layers - self.full_layers
        return {"pairs": self.full_layers * p["full"] + sparse_layers * p["sparse"],
                "compares": self.selection_layers * p["full"],
                "keys": self.full_layers * wl.kv_len + sparse_layers * p["sparse_keys"]}

    def pairs_per_head(self, wl: Workload) -> float:
        return self.stack_sums(wl)["pairs"] / self.layers

    def touched_keys(self, wl: Workload) -> float:
        return self.stack_sums(wl)["keys"] / self.layers

    def op_graph(self, wl: Workload, pairs):
        p, n = self.per_layer(wl), self.layers
        b, h, hkv, nq, d, dv, e, eo = (wl.batch, wl.q_heads, wl.kv_heads, wl.q_len, wl.qk_head_dim,
                                       wl.v_head_dim, wl.element_bytes, wl.output_bytes)
        ops = []
        for i, (kind, source) in enumerate(self.plan()):
            scores = b * h * (p["sparse"] if kind == "sparse" else p["full"])
            keys = p["sparse_keys"] if kind == "sparse" else wl.kv_len
            kernel, t = ("sparse_attention" if kind == "sparse" else "attention"), f"l{i}."
            ids = {f"l{source}.ids": ID_BYTES * b * h * p["sparse"] / n} if source is not None else {}
            ops.append(Op(t + "qk", kernel, matmul_flops=2 * scores * d / n, exp=scores / n,
                          other_flops=4 * scores / n, per_pair=True,
                          reads={t + "q": b * h * nq * d * e / n, t + "k": b * hkv * keys * d * e / n, **ids},
                          writes={t + "p": 0}))
            if kind == "select":  # top-k over the scores this layer already has: fused, on chip
                ops.append(Op(t + "top_k", kernel, other_flops=scores / n, reads={t + "p": 0},
                              writes={t + "ids": ID_BYTES * b * h * p["sparse"] / n}))
            ops.append(Op(t + "pv", kernel, matmul_flops=2 * scores * dv / n, side="pv", per_pair=True,
                          other_flops=b * h * nq * dv / n, reads={t + "p": 0, t + "v": b * hkv * keys * dv * e / n},
                          writes={t + "o": b * h * nq * dv * eo / n}))
        return build_graph(ops)

    # -- closed form: per-kind multiplicities, derived apart from the op graph ---------------
    def closed_form(self, sp, s: dict, phase: str):
        if phase in ("bwd", "fwd+bwd"):
            raise PatternError(f"--pattern layer-mix models --phase fwd and decode, not {phase}")
        n_layers, full, k = sp.symbols("L F K", positive=True, integer=True)
        b, h, hkv, n, m, d, dv, e, eo = (s[x] for x in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo"))
        if self.causal:
            full_pairs, sparse_pairs = n * (m - n) + n * (n + 1) / 2, causal_capped_sum_sym(sp, n, m, k)
        else:
            full_pairs, sparse_pairs = n * m, n * k
        sparse = n_layers - full
        pairs = (full * full_pairs + sparse * sparse_pairs) / n_layers
        keys = (full * m + sparse * sp.Min(m, n * k)) / n_layers
        exprs = {"pairs_per_head": pairs, "matmul_flops": 2 * b * h * pairs * (d + dv), "exp": b * h * pairs,
                 "compulsory_bytes": e * b * (h * n * d + hkv * keys * (d + dv)) + eo * b * h * n * dv}
        meanings = {"L": "layers in the stack", "F": "full-attention layers (selection layers included)",
                    "K": "keys per query in a sparse layer (top_k)"}
        return exprs, meanings, (("N <= M",) if self.causal else ()) + ("K <= M",)

    def formula_values(self, wl: Workload) -> dict:
        return {"L": self.layers, "F": self.full_layers, "K": self.top_k}
