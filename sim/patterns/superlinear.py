"""Superlinear multi-step attention, N = 2 (arXiv 2601.18401; code: the ``superlinear`` package,
``superlinear/kernels/superlinear/{search/_reference.py, span/_triton_impl.py, attention/_prefill.py,
common/power.py}``; defaults ``inv_search_power_int = 2``, ``forward_factor = 0``, ``span_power = 0.5``).

For the query at position p (t = p + 1 tokens visible):

1. sliding window: the last ``window`` keys, ``window = (s + 1)^2 - 1`` for the kernels' ``sw_index`` s;
2. span search: one score Q1 . K[a] per stripe anchor a = t - i^2, i = s + 1 .. floor(sqrt t)
   (c = max(floor(sqrt t) - s, 0) candidates: O(sqrt L) per query); the ``top_k`` best are kept;
3. span attention: each selected anchor a opens the span [max(a - L, 0), a], L = ceil(f sqrt t)
   (``backward_factor`` f = ``--span-factor``), min(L, a) + 1 keys; every span is its own softmax
   together with the window (spans end before the window starts);
4. combination: the span outputs are mixed by a softmax over their search scores.

Span search and attention both cost O(L^1.5): O(L^(1 + 1/N)) for N = 2. Which anchors win is
data-dependent; how many is not, and a span's size depends on its anchor only where it is clipped
at token 0 (only the farthest ~1-2 of the O(sqrt t) anchors). Pairs are counted for the k nearest
anchors: exact for any selection whose spans all start at or after token 0, and an upper bound
attained by those anchors otherwise (a span is never larger than the nearest anchors'). Search
scores are exact.

Prefill (``--phase fwd``, ``fused_prefill_with_swtriton``): the window is attended once and merged
into every span slot. Decode (``decode_span_attention_staged``): each of the k slots attends its
span and the window (the window is computed k times); with no candidate anchor (t <= window) it
falls back to dense attention over the t keys. The kernels are inference (and training) kernels
of one model; the backward is not modelled here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import PatternError
from ..workload import Workload
from .base import Flag, Pattern
from .opgraph import Op, build_graph

INDEX_BYTES = 4
MERGE_OPS = 2  # per (query, slot, V element): rescale the window's partial output and add it


@dataclass(frozen=True)
class Superlinear(Pattern):
    top_k: int = 3            # num_spans: the prefill/decode API default
    window: int = 0           # (sw_index + 1)^2 - 1; sw_index = 0 (no window) is the API default
    span_factor: float = 2.0  # backward_factor: the API default

    name = "superlinear"
    causal = True  # causal by construction: full causal attention is the baseline to compare with
    tileable = False
    flags = frozenset({"top_k", "window", "span_factor"})
    cli_flags = (Flag("span_factor", "float", "Superlinear: span length ceil(f sqrt(t)) keys before the anchor "
                      "(the kernels' backward_factor) [default: 2.0]"),)

    @classmethod
    def from_flags(cls, f: dict) -> "Superlinear":
        window = f.get("window")
        try:
            window = int(window) if window is not None else 0
        except ValueError:
            raise PatternError(f"--window {window!r}: superlinear's window is one number of keys, "
                               "(s + 1)^2 - 1: 0, 3, 8, 15, 24, ...") from None
        return cls(top_k=f["top_k"] if f.get("top_k") is not None else 3, window=window,
                   span_factor=f["span_factor"] if f.get("span_factor") is not None else 2.0)

    @property
    def sw_index(self) -> int:
        return math.isqrt(self.window + 1) - 1

    def check(self, wl: Workload) -> None:
        if self.top_k <= 0:
            raise PatternError(f"--top-k must be positive (spans per query), got {self.top_k}")
        if self.window < 0 or (self.sw_index + 1) ** 2 != self.window + 1:
            raise PatternError(f"--window {self.window}: superlinear's window is (s + 1)^2 - 1 keys for its "
                               "sw_index s, so that the stripes start past it: use 0, 3, 8, 15, 24, ...")
        if not self.span_factor > 0:
            raise PatternError(f"--span-factor must be positive, got {self.span_factor}")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern superlinear is causal over a 1D sequence: use --seq, not --tokens")
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError(f"--phase {wl.phase}: superlinear's backward is not modelled; use --phase fwd "
                               "(prefill) or decode")
        if wl.phase == "fwd" and wl.q_len != wl.kv_len:
            raise PatternError("--pattern superlinear prefill is causal self-attention: use --seq without "
                               "--kv-seq, or --phase decode")
        if wl.q_len * max(1, self.top_k) > 1 << 26:
            raise PatternError(f"--seq {wl.q_len}: superlinear counts each query's spans (O(N)); keep N x --top-k "
                               "below 2^26")

    def layout(self, wl: Workload):
        raise PatternError("superlinear's spans are data-dependent: no per-dimension layout and no tile counts")

    def params(self) -> dict:
        return {"top_k": self.top_k, "window": self.window, "span_factor": self.span_factor}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"superlinear (N=2): window {self.window}, stripe anchors t - i^2 for i > {self.sw_index}, top-"
                f"{self.top_k} spans of ceil({self.span_factor:g} sqrt t) + 1 keys; span pairs counted for the "
                "nearest anchors (exact unless a selected span is clipped at token 0, then an upper bound)",
                "superlinear kernels: span search (anchor scores, top-k), span attention (window "
                + ("once per query, merged into each slot" if wl.phase == "fwd" else "re-attended by each slot")
                + "), softmax gating of the slots; decode reads each head's anchors, window and spans once "
                "(no reuse across heads)"]

    # -- exact counts, vectorised over the queries --------------------------------------
    def _positions(self, wl: Workload) -> np.ndarray:
        """t = p + 1 for every query (bottom-right, as in decode)."""
        return np.arange(wl.kv_len - wl.q_len + 1, wl.kv_len + 1, dtype=np.int64)

    def per_query(self, wl: Workload) -> dict[str, np.ndarray]:
        """Per query: window keys, candidate anchors, selected spans, span keys."""
        t, s, k = self._positions(wl), self.sw_index, self.top_k
        window = np.minimum(self.window, t)
        roots = np.floor(np.sqrt(t.astype(np.float64))).astype(np.int64)  # exact below 2^52
        candidates = np.maximum(roots - s, 0)
        spans = np.minimum(k, candidates)
        length = np.ceil(self.span_factor * np.sqrt(t.astype(np.float64))).astype(np.int64)
        # anchors i = s+1 .. s+spans: a = t - i^2; unclipped (a >= L) for i <= isqrt(t - L)
        whole = np.clip(np.floor(np.sqrt(np.maximum(t - length, 0).astype(np.float64))).astype(np.int64) - s,
                        0, spans)
        clipped = spans - whole  # the farthest selected anchors: min(L, a) = a
        sq = _square_sum(s + spans) - _square_sum(s + whole)
        span_keys = spans + whole * length + clipped * t - sq
        return {"window": window, "candidates": candidates, "spans": spans, "span_keys": span_keys}

    def _window_pairs(self, wl: Workload, q: dict) -> np.ndarray:
        if wl.phase == "fwd":
            return q["window"]
        # decode: each slot re-attends the window; no candidate: dense attention over the t keys
        return np.where(q["candidates"] > 0, self.top_k * q["window"], q["window"])

    def pairs_per_head(self, wl: Workload) -> int:
        q = self.per_query(wl)
        return int((self._window_pairs(wl, q) + q["span_keys"]).sum())

    def search_scores_per_head(self, wl: Workload) -> int:
        return int(self.per_query(wl)["candidates"].sum())

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len if wl.phase == "fwd" else min(wl.kv_len, int(self._read_keys(wl).max()))

    def _read_keys(self, wl: Workload) -> np.ndarray:
        """Decode: keys (K and V) each head reads per query: window and spans (anchors: K only)."""
        q = self.per_query(wl)
        return q["window"] + q["span_keys"]

    def _slots(self, wl: Workload, q: dict) -> int:
        """(query, slot) pairs gated: every slot in prefill; decode only with candidates."""
        if wl.phase == "fwd":
            return wl.q_len * self.top_k
        return int(np.where(q["candidates"] > 0, self.top_k, 0).sum())

    def op_graph(self, wl: Workload, pairs: int):
        e, eo, b, h, hkv, n = wl.element_bytes, wl.output_bytes, wl.batch, wl.q_heads, wl.kv_heads, wl.q_len
        d, dv = wl.qk_head_dim, wl.v_head_dim
        q = self.per_query(wl)
        searched, slots, scores = b * h * int(q["candidates"].sum()), b * h * self._slots(wl, q), b * h * pairs
        queries = {"q1": b * h * n * d * e, "q2": b * h * n * d * e}
        if wl.phase == "fwd":
            k_bytes, v_bytes, anchor_bytes = b * hkv * wl.kv_len * d * e, b * hkv * wl.kv_len * dv * e, 0
        else:  # decode: what each query head reads (its selection is its own)
            keys = int(self._read_keys(wl).sum())
            k_bytes, v_bytes, anchor_bytes = b * h * keys * d * e, b * h * keys * dv * e, searched * d * e
        spans = {"span_ids": b * h * n * self.top_k * 2 * INDEX_BYTES}
        return build_graph([
            Op("search", "search", matmul_flops=2 * searched * d, side="qk",
               reads={"q1": queries["q1"], **({"k": k_bytes} if wl.phase == "fwd" else {"k_anchors": anchor_bytes})},
               writes={"search_scores": 0}),
            Op("top_k", "search", other_flops=searched, reads={"search_scores": 0},
               writes={**spans, "span_scores": b * h * n * self.top_k * 4}),
            Op("qk", "span_attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
               per_pair=True, reads={"q2": queries["q2"], "k": k_bytes, **spans}, writes={"p": 0}),
            Op("pv", "span_attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
               other_flops=(1 + MERGE_OPS) * slots * dv, reads={"p": 0, "v": v_bytes},
               writes={"o_spans": 0}),
            # gating: softmax over the slots' search scores, then the weighted sum of their outputs
            Op("gate", "span_attention", matmul_flops=2 * slots * dv, side="pv", exp=slots, other_flops=2 * slots,
               reads={"o_spans": 0, "span_scores": b * h * n * self.top_k * 4}, writes={"o": b * h * n * dv * eo}),
        ])

    # -- closed forms (prefill) --------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Superlinear":
        if rank != 1:
            raise PatternError("--rank: --pattern superlinear is 1D (use --rank 1)")
        return cls()

    def closed_form(self, sp, s: dict, phase: str):
        if phase != "fwd":
            raise PatternError(f"--phase {phase}: the closed form covers --phase fwd (prefill); attnsim counts decode")
        b, h, hkv, n, d, dv, e, eo = (s[k] for k in ("B", "H", "Hkv", "N", "D", "Dv", "e", "eo"))
        k, w, sw = sp.symbols("k W s", integer=True, nonnegative=True)
        f = sp.Symbol("f", positive=True)
        t = sp.Symbol("t", integer=True, positive=True)
        root = sp.floor(sp.sqrt(t))
        candidates = sp.Max(root - sw, 0)
        spans = sp.Min(k, candidates)
        length = sp.ceiling(f * sp.sqrt(t))
        whole = sp.Min(sp.Max(sp.floor(sp.sqrt(sp.Max(t - length, 0))) - sw, 0), spans)
        span_keys = (spans + whole * length + (spans - whole) * t
                     - (_square_form(sw + spans) - _square_form(sw + whole)))
        pairs = sp.Sum(sp.Min(w, t) + span_keys, (t, 1, n))
        searched = sp.Sum(candidates, (t, 1, n))
        exprs = {"pairs_per_head": pairs, "search_scores_per_head": searched,
                 "matmul_flops": 2 * b * h * ((d + dv) * pairs + d * searched + n * k * dv),
                 "exp": b * h * (pairs + n * k),
                 "compulsory_bytes": e * (2 * b * h * n * d + b * hkv * n * (d + dv)) + eo * b * h * n * dv}
        meanings = {"k": "spans per query (top-k)", "W": "sliding window keys, (s + 1)^2 - 1",
                    "s": "sw_index", "f": "span factor (backward_factor)", "t": "tokens visible to the query"}
        return exprs, meanings, ("N = M (causal prefill)", "nearest-anchor spans (exact unless clipped at token 0)")

    def formula_values(self, wl: Workload) -> dict:
        return {"k": self.top_k, "W": self.window, "s": self.sw_index, "f": self.span_factor}


def _square_sum(x: np.ndarray) -> np.ndarray:
    """sum_{i=1}^{x} i^2."""
    return x * (x + 1) * (2 * x + 1) // 6


def _square_form(x):
    return x * (x + 1) * (2 * x + 1) / 6
