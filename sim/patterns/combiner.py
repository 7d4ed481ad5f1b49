"""Combiner (Ren et al., NeurIPS 2021, arXiv 2107.05768; github google-research/google-research
``combiner/``): full attention through a structured factorisation. The sequence is cut into
S = N / b segments of ``block_size`` b tokens; a query attends some tokens directly and the rest
through one summary (a key and a value) per region, all in one softmax.

* ``fixed`` (Combiner-Fixed, paper sec. 4; JAX ``_SelfAttSqrtn``, TF ``sqrt_fixed_full``): direct
  attention within the own segment (causally: up to the query); one summary per segment, its key
  the max-pooled segment keys, its value the attention of the max-pooled segment queries over the
  segment. Causal queries attend the summaries of strictly earlier segments; non-causal ones
  attend every segment's summary, their own included (the TF code masks nothing then).
* ``axial`` (Combiner-Axial, JAX ``_SelfAttAxialRowmajor``, TF ``axial_rowmajor``): segments are
  the rows of an S x b grid. Direct attention along the row (causally: up to the query); the
  summary of row r at column c is query (r, c)'s attention over its whole row, projected to a key
  by Dense + residual + LayerNorm + Dense (the JAX code; model width assumed H x D). A query at
  column c attends the column-c summaries of strictly earlier rows (causal) or of every row.

Pairs per head (direct + summaries): causal S b(b+1)/2 + b S(S-1)/2 in both modes; non-causal
N b + N S. With b = sqrt(N) both are O(N^1.5). The summaries cost N pairs per head (fixed: S pooled
queries x b keys) or N b (axial: full rows), plus pooling or the projection. Training phases add
the FlashAttention-2 backward of both attentions and of the pooling / projection. The reference
code has no incremental decode: ``--phase decode`` is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .backward import TRAINING_PHASES, attention_backward, phase_ops
from .base import Flag, Pattern
from .flagvals import causal_switch, one_block
from .opgraph import LSE_BYTES, Op, build_graph

MODES = ("fixed", "axial")
LAYERNORM_OPS = 6   # residual add + LayerNorm (mean, variance, normalise, scale, shift) per element


@dataclass(frozen=True)
class Part:
    """One attention of the factorisation: ``scores`` pairs in ``rows`` softmax rows (totals over
    batch and heads), query tensor, key and value tensors (name -> bytes) and output tensor."""

    stem: str
    kernel: str
    scores: int
    rows: int
    q: tuple[str, int]
    keys: dict
    values: dict
    out: tuple[str, int]


@dataclass(frozen=True)
class Combiner(Pattern):
    block_size: int
    mode: str = "fixed"
    causal: bool = False

    name = "combiner"
    tileable = False
    flags = frozenset({"block_size", "causal", "combiner_mode"})
    cli_flags = (Flag("combiner_mode", "str", "Combiner factorisation: fixed (segments + segment summaries) "
                      "or axial (rows + column summaries) [default: fixed]"),)

    @classmethod
    def from_flags(cls, f: dict) -> "Combiner":
        block = one_block(f, "combiner", 256)
        if block is None:
            raise PatternError("--pattern combiner needs --block-size as one number of tokens "
                               "(segment length), e.g. 256")
        return cls(block, f.get("combiner_mode") or "fixed", causal_switch(f, "combiner"))

    def check(self, wl: Workload) -> None:
        if self.mode not in MODES:
            raise PatternError(f"--combiner-mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.block_size <= 0:
            raise PatternError(f"--block-size must be positive, got {self.block_size}")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern combiner is for 1D sequences: use --seq, not --tokens")
        if wl.phase == "decode":
            raise PatternError("--phase decode: Combiner's reference code has no incremental decode "
                               "(use --phase fwd, bwd or fwd+bwd)")
        if wl.q_len != wl.kv_len:
            raise PatternError("--pattern combiner is self-attention: use --seq without --kv-seq")
        if wl.q_len % self.block_size:
            raise PatternError(f"--block-size {self.block_size} must divide the {wl.q_len} tokens: Combiner "
                               "reshapes the sequence into whole segments (max_seq_len % max_seg_len == 0)")

    def layout(self, wl: Workload):
        raise PatternError("combiner attends summaries as well as tokens: no per-dimension layout")

    def params(self) -> dict:
        return {"block_size": self.block_size, "mode": self.mode, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        notes = [f"Combiner-{self.mode}: one softmax over direct keys and region summaries; attended pairs "
                 "count the kept (query, key-or-summary) pairs, not the masked logits the reference computes",
                 "summary ops: " + ("max-pooled segment queries attend their segment; keys max-pooled" if
                                    self.mode == "fixed" else "full-row attention, then Dense + residual + "
                                    "LayerNorm + Dense to a key (model width assumed H x D)")]
        if wl.phase in TRAINING_PHASES:
            notes.append("training: FlashAttention-2 backward of both attentions; pooling backward one op per "
                         "element, projection backward 2x its forward (input and weight gradients)")
        return notes

    # -- exact counts ------------------------------------------------------------------
    def segments(self, wl: Workload) -> int:
        return wl.q_len // self.block_size

    def direct_pairs(self, wl: Workload) -> int:
        b, s = self.block_size, self.segments(wl)
        return s * b * (b + 1) // 2 if self.causal else wl.q_len * b

    def summary_pairs(self, wl: Workload) -> int:
        """(query, summary) pairs per head."""
        b, s = self.block_size, self.segments(wl)
        return b * s * (s - 1) // 2 if self.causal else wl.q_len * s

    def pairs_per_head(self, wl: Workload) -> int:
        return self.direct_pairs(wl) + self.summary_pairs(wl)

    def summarise_pairs(self, wl: Workload) -> int:
        """Pairs per head of the attention that builds the summaries."""
        return wl.q_len if self.mode == "fixed" else wl.q_len * self.block_size

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len

    # -- ops ----------------------------------------------------------------------------
    def _parts(self, wl: Workload) -> tuple[list[Part], list[tuple[Op, Op]]]:
        """The two attentions and the summary ops (forward op, backward op)."""
        e, eo, bt, h, hkv, n = wl.element_bytes, wl.output_bytes, wl.batch, wl.q_heads, wl.kv_heads, wl.q_len
        d, dv, s = wl.qk_head_dim, wl.v_head_dim, self.segments(wl)
        q, k, v = ("q", bt * h * n * d * e), ("k", bt * hkv * n * d * e), ("v", bt * hkv * n * dv * e)
        main_scores = bt * h * self.pairs_per_head(wl)
        if self.mode == "fixed":
            pooled_q, sum_k, sum_v = bt * h * s * d * e, bt * hkv * s * d * e, bt * h * s * dv * e
            summary = Part("summary_", "summary", bt * h * n, bt * h * s, ("q_pooled", pooled_q), dict([k]),
                           dict([v]), ("v_summary", sum_v))
            aux = [(Op("pool_q", "summary", other_flops=bt * h * n * d, reads=dict([q]), writes={"q_pooled": pooled_q}),
                    Op("bwd_pool_q", "bwd_pool", other_flops=bt * h * n * d, reads={"dq_pooled": pooled_q},
                       writes={"dq": q[1]})),
                   (Op("pool_k", "summary", other_flops=bt * hkv * n * d, reads=dict([k]), writes={"k_summary": sum_k}),
                    Op("bwd_pool_k", "bwd_pool", other_flops=bt * hkv * n * d, reads={"dk_summary": sum_k},
                       writes={"dk": k[1]}))]
            sum_keys, sum_vals = {"k_summary": sum_k}, {"v_summary": sum_v}
        else:
            row_out, k_row = bt * h * n * dv * e, bt * h * n * d * e
            width = h * d  # model width (inferred: the JAX layer's qkv width is the model width)
            x, w1, w2 = bt * n * width * e, h * dv * width * e, width * h * d * e
            proj = 2 * bt * n * width * (h * dv + h * d)
            summary = Part("summary_", "summary", bt * h * n * self.block_size, bt * h * n, q, dict([k]), dict([v]),
                           ("row_out", row_out))
            aux = [(Op("summary_proj", "summary_proj", matmul_flops=proj, side="pv",
                       other_flops=LAYERNORM_OPS * bt * n * width,
                       reads={"row_out": row_out, "x": x, "w_summary": w1 + w2}, writes={"k_row": k_row}),
                    Op("bwd_summary_proj", "bwd_summary_proj", matmul_flops=2 * proj, side="pv",
                       other_flops=2 * LAYERNORM_OPS * bt * n * width,
                       reads={"dk_row": k_row, "x": x, "w_summary": w1 + w2, "saved_row_out": row_out},
                       writes={"drow_out": row_out, "dx": x, "dw_summary": w1 + w2}))]
            sum_keys, sum_vals = {"k_row": k_row}, {"row_out": row_out}
        main = Part("", "attention", main_scores, bt * h * n, q, {**dict([k]), **sum_keys}, {**dict([v]), **sum_vals},
                    ("o", bt * h * n * dv * eo))
        return [summary, main], aux

    def op_graph(self, wl: Workload, pairs: int):
        parts, aux = self._parts(wl)
        d, dv = wl.qk_head_dim, wl.v_head_dim
        summary, main = parts

        def forward(training: bool) -> list[Op]:
            ops = [fwd for fwd, _ in aux if fwd.kernel == "summary"] + _attention(summary, d, dv, False)
            ops += [fwd for fwd, _ in aux if fwd.kernel != "summary"] + _attention(main, d, dv, training)
            if training:  # keep the summaries and their softmax statistics for the backward
                saved = {f"saved_{t}": b for t, b in {**summary.keys, **summary.values, summary.q[0]: summary.q[1],
                                                       **{k: b for k, b in main.keys.items() if k != "k"},
                                                       **{k: b for k, b in main.values.items() if k != "v"}}.items()
                         if t not in ("k", "v", "q")}
                saved["saved_summary_lse"] = summary.rows * LSE_BYTES
                ops.append(Op("save_summaries", "attention", reads={summary.out[0]: summary.out[1]}, writes=saved))
            return ops

        def backward() -> list[Op]:
            return _backward(self.mode, summary, main, aux, wl)

        return build_graph(phase_ops(wl, forward, backward))

    # -- closed forms ------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Combiner":
        if rank != 1:
            raise PatternError("--rank: --pattern combiner is 1D (use --rank 1)")
        return cls(block_size=1, mode="fixed", causal=causal)

    def closed_form(self, sp, s: dict, phase: str):
        if phase in ("decode", *TRAINING_PHASES):
            raise PatternError(f"--phase {phase}: the closed form covers --phase fwd (attnsim counts the others)")
        bt, h, hkv, n, d, dv, e, eo = (s[k] for k in ("B", "H", "Hkv", "N", "D", "Dv", "e", "eo"))
        b = sp.Symbol("b", integer=True, positive=True)
        segs = n / b
        direct = segs * b * (b + 1) / 2 if self.causal else n * b
        summary = b * segs * (segs - 1) / 2 if self.causal else n * segs
        pairs = direct + summary
        if self.mode == "fixed":
            summarise, proj, extra_bytes = n, 0, 0
        else:
            summarise = n * b
            proj = 2 * bt * n * h * d * (h * dv + h * d)
            extra_bytes = e * (bt * n * h * d + h * d * (h * dv + h * d))  # layer input x, two weights
        exprs = {"pairs_per_head": pairs, "pairs_per_head.direct": direct, "pairs_per_head.summaries": summary,
                 "matmul_flops": 2 * bt * h * (d + dv) * (pairs + summarise) + proj,
                 "exp": bt * h * (pairs + summarise),
                 "compulsory_bytes": e * (bt * h * n * d + bt * hkv * n * (d + dv)) + eo * bt * h * n * dv
                 + extra_bytes}
        return exprs, {"b": "block size (segment length)"}, ("N = M, b divides N",)

    def formula_values(self, wl: Workload) -> dict:
        return {"b": self.block_size}


def _attention(part: Part, d: int, dv: int, training: bool) -> list[Op]:
    """Forward of one attention (one fused kernel): QK^T over keys and summary keys, then PV."""
    p, lse = f"{part.stem}p", ({f"{part.stem}lse": part.rows * LSE_BYTES} if training and not part.stem else {})
    return [Op(f"{part.stem}qk", part.kernel, matmul_flops=2 * part.scores * d, side="qk", exp=part.scores,
               other_flops=4 * part.scores, per_pair=True, reads={part.q[0]: part.q[1], **part.keys}, writes={p: 0}),
            Op(f"{part.stem}pv", part.kernel, matmul_flops=2 * part.scores * dv, side="pv", per_pair=True,
               other_flops=part.rows * dv, reads={p: 0, **part.values}, writes={part.out[0]: part.out[1], **lse})]


def _backward(mode: str, summary: Part, main: Part, aux, wl: Workload) -> list[Op]:
    """Main attention backward (its summary-key and summary-value gradients flow to the summary
    ops), then the summary ops' backward and the summary attention's."""
    d, dv = wl.qk_head_dim, wl.v_head_dim
    q, k, v, o = dict([main.q]), {"k": main.keys["k"]}, {"v": main.values["v"]}, dict([main.out])
    saved = {f"saved_{t}": b for t, b in {**main.keys, **main.values}.items() if t not in ("k", "v")}
    grad = {"dq": main.q[1], "dk": k["k"], "dv": v["v"]}
    io = {"q": q, "k": k, "v": v, "o": o, "do": {"do": main.out[1]}, "lse": {"lse": main.rows * LSE_BYTES},
          **{role: {role: size} for role, size in grad.items()}}
    ops = attention_backward(io, main.scores, main.rows, d, dv, extra_reads=saved)
    grads = {f"d{t}": b for t, b in {**main.keys, **main.values}.items() if t not in ("k", "v")}
    ops.append(Op("bwd_summary_grads", "bwd_attention", reads={"ds": 0}, writes=grads))
    ops += [bwd for _, bwd in aux]
    fixed = mode == "fixed"
    s_io = {"q": {f"saved_{summary.q[0]}": summary.q[1]} if fixed else q, "k": k, "v": v,
            "o": {f"saved_{summary.out[0]}": summary.out[1]},
            "do": {"dv_summary" if fixed else "drow_out": summary.out[1]},
            "lse": {"saved_summary_lse": summary.rows * LSE_BYTES},
            "dq": {"dq_pooled": summary.q[1]} if fixed else {"dq": main.q[1]},
            "dk": {"dk": k["k"]}, "dv": {"dv": v["v"]}}
    return ops + attention_backward(s_io, summary.scores, summary.rows, d, dv, stem="summary_")
