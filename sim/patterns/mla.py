"""Multi-head latent attention (DeepSeek-V2/V3): keys and values live in a shared latent.

Every token caches one latent ``c_kv`` of ``kv_lora_rank`` values and one RoPE key of
``rope_dim`` values, shared by all heads. Per head, ``k_nope = c_kv W_UK`` and
``v = c_kv W_UV``; the query splits into ``q_nope`` (``qk_head_dim - rope_dim``) and ``q_rope``.

- ``up-project`` (prefill): a GEMM kernel decompresses K_nope and V for every head, then
  standard attention runs with head dims ``qk_head_dim`` / ``v_head_dim``.
- ``absorbed`` (decode, FlashMLA): ``W_UK`` is folded into the query
  (``q_latent = q_nope W_UK^T``), attention runs directly on the cached latent (scores over
  ``kv_lora_rank + rope_dim`` dims, values of ``kv_lora_rank`` dims, one KV "head" for all query
  heads), and ``W_UV`` up-projects the output.

Scores follow a dense or causal mask, so pairs and tiles come from that mask. Attention-layer
projections outside the core (W_DQ, W_DKV, W_O) are not counted, as for every other pattern.

Backward (``bwd``, ``fwd+bwd``; up-project, the training formulation — DeepSeek-V2 arXiv
2405.04434 section 2.1.2 absorbs the weights for inference only): a FlashAttention-2 backward with
head dims ``qk_head_dim`` / ``v_head_dim`` reading the saved up-projected K_nope and V (autograd
keeps a linear layer's output; nothing is recomputed), whose dK of the shared RoPE key sums over
the heads inside the matmul; then the up-projection's backward, two GEMMs as for any linear layer:
``dc_kv = dK_nope W_UK^T + dV W_UV^T`` and ``dW_UK = c_kv^T dK_nope``, ``dW_UV = c_kv^T dV``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .axes import BandAxis, DenseAxis
from .backward import TRAINING_PHASES, attention_backward, phase_ops
from .base import AxisLayout, Pattern
from .opgraph import LSE_BYTES, Op, build_graph

MODES = ("auto", "up-project", "absorbed")


@dataclass(frozen=True)
class MLA(Pattern):
    kv_lora_rank: int = 512   # DeepSeek-V2/V3 config.json: kv_lora_rank
    rope_dim: int = 64        # DeepSeek-V2/V3 config.json: qk_rope_head_dim
    causal: bool = True
    mode: str = "auto"        # auto: absorbed for decode, up-project otherwise

    name = "mla"

    def check(self, wl: Workload) -> None:
        if self.kv_lora_rank <= 0:
            raise PatternError(f"--kv-lora-rank must be positive, got {self.kv_lora_rank}")
        if self.rope_dim < 0:
            raise PatternError(f"--rope-dim must be >= 0, got {self.rope_dim}")
        if wl.qk_head_dim <= self.rope_dim:
            raise PatternError(f"--head-dim {wl.qk_head_dim} must exceed --rope-dim {self.rope_dim}: the "
                               "QK head dim is nope + rope (DeepSeek-V3: --head-dim 192 --v-head-dim 128)")
        if self.mode not in MODES:
            raise PatternError(f"mla mode {self.mode!r} is unknown: use one of {', '.join(MODES)}")
        if wl.phase in TRAINING_PHASES and self.mode == "absorbed":
            raise PatternError(f"--mla-mode absorbed is the inference formulation: --phase {wl.phase} trains "
                               "with --mla-mode up-project (or auto)")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern mla is for 1D sequences: use --seq, not --tokens")

    def layout(self, wl: Workload) -> AxisLayout:
        rule = BandAxis(left=None, right=0) if self.causal else DenseAxis()
        return AxisLayout((wl.q_len,), (wl.kv_len,), (rule,))

    def params(self) -> dict:
        return {"kv_lora_rank": self.kv_lora_rank, "rope_dim": self.rope_dim, "causal": int(self.causal),
                "mode": self.mode}

    def resolved_mode_name(self, wl: Workload) -> str:
        if self.mode != "auto":
            return self.mode
        return "absorbed" if wl.phase == "decode" else "up-project"

    def assumptions(self, wl: Workload) -> list[str]:
        mode = self.resolved_mode_name(wl)
        return [f"MLA {mode}: latent KV cache of kv_lora_rank + rope_dim = "
                f"{self.kv_lora_rank + self.rope_dim} values per token, shared by all heads; "
                "W_DQ/W_DKV/W_O projections not counted"] + (
            ["MLA backward: FlashAttention-2 on the saved up-projected K_nope, V (no recompute), then the "
             "up-projection's dgrad and wgrad GEMMs"] if wl.phase in TRAINING_PHASES else [])

    def op_graph(self, wl: Workload, pairs: int):
        if self.resolved_mode_name(wl) == "absorbed":
            return build_graph(_absorbed(self, wl, pairs))
        return build_graph(phase_ops(wl, lambda training: _up_project(self, wl, pairs, training),
                                     lambda: _up_project_backward(self, wl, pairs)))


def _shapes(p: MLA, wl: Workload) -> tuple:
    """(e, eo, b, h, nope, r, rope, dv, nq, nkv): bytes, batch, heads, dims and lengths."""
    return (wl.element_bytes, wl.output_bytes, wl.batch, wl.q_heads, wl.qk_head_dim - p.rope_dim,
            p.kv_lora_rank, p.rope_dim, wl.v_head_dim, wl.q_len, wl.kv_len)


def _up_project(p: MLA, wl: Workload, pairs: int, training: bool = False) -> list[Op]:
    """Decompress K_nope and V, then attention; ``training`` also keeps them and the LSE."""
    e, eo, b, h, nope, r, rope, dv, nq, nkv = _shapes(p, wl)
    scores = b * h * pairs
    k_nope, v = b * nkv * h * nope * e, b * nkv * h * dv * e
    kept = ({"saved_k_nope": k_nope}, {"saved_v": v}, {"lse": b * h * nq * LSE_BYTES}) if training else ({},) * 3
    return [
        Op("k_nope_up", "decompress", matmul_flops=2 * b * nkv * r * h * nope, side="qk",
           reads={"c_kv": b * nkv * r * e, "w_uk": r * h * nope * e}, writes={"k_nope": k_nope, **kept[0]}),
        Op("v_up", "decompress", matmul_flops=2 * b * nkv * r * h * dv, side="pv",
           reads={"c_kv": b * nkv * r * e, "w_uv": r * h * dv * e}, writes={"v": v, **kept[1]}),
        Op("qk", "attention", matmul_flops=2 * scores * (nope + rope), side="qk", exp=scores, per_pair=True,
           other_flops=4 * scores,
           reads={"q": b * nq * h * (nope + rope) * e, "k_nope": b * nkv * h * nope * e,
                  "k_rope": b * nkv * rope * e}, writes={"p": 0}),
        Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True, other_flops=b * h * nq * dv,
           reads={"p": 0, "v": b * nkv * h * dv * e}, writes={"o": b * nq * h * dv * eo, **kept[2]}),
    ]


def _up_project_backward(p: MLA, wl: Workload, pairs: int) -> list[Op]:
    e, eo, b, h, nope, r, rope, dv, nq, nkv = _shapes(p, wl)
    q, o = b * nq * h * (nope + rope) * e, b * nq * h * dv * eo
    k_nope, k_rope, v = b * nkv * h * nope * e, b * nkv * rope * e, b * nkv * h * dv * e
    c_kv, w_uk, w_uv = b * nkv * r * e, r * h * nope * e, r * h * dv * e
    io = {"q": {"q": q}, "k": {"saved_k_nope": k_nope, "k_rope": k_rope}, "v": {"saved_v": v},
          "o": {"o": o}, "do": {"do": o}, "lse": {"lse": b * h * nq * LSE_BYTES},
          "dq": {"dq": q}, "dk": {"dk_nope": k_nope, "dk_rope": k_rope}, "dv": {"dv": v}}
    attention = attention_backward(io, b * h * pairs, b * h * nq, nope + rope, dv)
    dgrad, wgrad = "bwd_decompress_dgrad", "bwd_decompress_wgrad"
    return attention + [  # the up-projection as one linear layer c_kv -> [K_nope | V]: dgrad, wgrad
        Op("bwd_k_nope_up_dgrad", dgrad, matmul_flops=2 * b * nkv * h * nope * r, side="qk",
           reads={"dk_nope": k_nope, "w_uk": w_uk}, writes={"dc_kv_nope": 0}),
        Op("bwd_v_up_dgrad", dgrad, matmul_flops=2 * b * nkv * h * dv * r, side="pv",
           reads={"dv": v, "w_uv": w_uv, "dc_kv_nope": 0}, writes={"dc_kv": c_kv}),
        Op("bwd_w_uk_wgrad", wgrad, matmul_flops=2 * b * nkv * r * h * nope, side="qk",
           reads={"c_kv": c_kv, "dk_nope": k_nope}, writes={"dw_uk": w_uk}),
        Op("bwd_w_uv_wgrad", wgrad, matmul_flops=2 * b * nkv * r * h * dv, side="pv",
           reads={"c_kv": c_kv, "dv": v}, writes={"dw_uv": w_uv}),
    ]


def _absorbed(p: MLA, wl: Workload, pairs: int) -> list[Op]:
    e, eo, b, h, nope, r, rope, dv, nq, nkv = _shapes(p, wl)
    scores = b * h * pairs
    return [
        Op("q_absorb", "attention", matmul_flops=2 * b * nq * h * nope * r, side="qk",
           reads={"q_nope": b * nq * h * nope * e, "w_uk": r * h * nope * e}, writes={"q_latent": 0}),
        Op("qk_latent", "attention", matmul_flops=2 * scores * (r + rope), side="qk", exp=scores, per_pair=True,
           other_flops=4 * scores,
           reads={"q_latent": 0, "q_rope": b * nq * h * rope * e, "c_kv": b * nkv * r * e,
                  "k_rope": b * nkv * rope * e}, writes={"p": 0}),
        Op("pv_latent", "attention", matmul_flops=2 * scores * r, side="pv", per_pair=True, other_flops=b * h * nq * r,
           reads={"p": 0, "c_kv": b * nkv * r * e}, writes={"o_latent": b * nq * h * r * eo}),
        Op("v_up", "output", matmul_flops=2 * b * nq * h * r * dv, side="pv",
           reads={"o_latent": b * nq * h * r * eo, "w_uv": r * h * dv * e}, writes={"o": b * nq * h * dv * eo}),
    ]
