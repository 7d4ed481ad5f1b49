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
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .axes import BandAxis, DenseAxis
from .base import AxisLayout, Pattern
from .opgraph import Op, build_graph

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
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError("--pattern mla models --phase fwd and decode; its backward is not modelled yet")
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
                "W_DQ/W_DKV/W_O projections not counted"]

    def op_graph(self, wl: Workload, pairs: int):
        return build_graph(_absorbed(self, wl, pairs) if self.resolved_mode_name(wl) == "absorbed"
                           else _up_project(self, wl, pairs))


def _shapes(p: MLA, wl: Workload) -> tuple:
    """(e, eo, b, h, nope, r, rope, dv, nq, nkv): bytes, batch, heads, dims and lengths."""
    return (wl.element_bytes, wl.output_bytes, wl.batch, wl.q_heads, wl.qk_head_dim - p.rope_dim,
            p.kv_lora_rank, p.rope_dim, wl.v_head_dim, wl.q_len, wl.kv_len)


def _up_project(p: MLA, wl: Workload, pairs: int) -> list[Op]:
    e, eo, b, h, nope, r, rope, dv, nq, nkv = _shapes(p, wl)
    scores = b * h * pairs
    return [
        Op("k_nope_up", "decompress", matmul_flops=2 * b * nkv * r * h * nope, side="qk",
           reads={"c_kv": b * nkv * r * e, "w_uk": r * h * nope * e}, writes={"k_nope": b * nkv * h * nope * e}),
        Op("v_up", "decompress", matmul_flops=2 * b * nkv * r * h * dv, side="pv",
           reads={"c_kv": b * nkv * r * e, "w_uv": r * h * dv * e}, writes={"v": b * nkv * h * dv * e}),
        Op("qk", "attention", matmul_flops=2 * scores * (nope + rope), side="qk", exp=scores, per_pair=True,
           other_flops=4 * scores,
           reads={"q": b * nq * h * (nope + rope) * e, "k_nope": b * nkv * h * nope * e,
                  "k_rope": b * nkv * rope * e}, writes={"p": 0}),
        Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True, other_flops=b * h * nq * dv,
           reads={"p": 0, "v": b * nkv * h * dv * e}, writes={"o": b * nq * h * dv * eo}),
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
