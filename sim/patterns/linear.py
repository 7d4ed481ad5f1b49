"""Linear attention: ``O = phi(Q) (phi(K)^T V)`` without a softmax (NaLaFormer, L2ViT, GLA-style).

Causal, chunked (the form fused kernels use, chunk ``C``): per chunk, the intra-chunk part is a
masked ``C x C`` quadratic attention, ``(phi(Q_c) phi(K_c)^T * mask) V_c``, computed as full
``C x C`` products; the inter-chunk part reads the running ``D x Dv`` state,
``phi(Q_c) H``, and the state grows by ``phi(K_c)^T V_c``. Non-causal: ``H = phi(K)^T V`` once,
then ``O = phi(Q) H``. Decode (recurrent): per new token, ``H += phi(k) v^T`` and ``o = phi(q) H``
— no KV cache, only the fp32 state is read and written.

Assumptions (said in ``assumptions``): the feature map costs one op per element of Q and K; no
normaliser row-sum (modern variants normalise the output instead); the state is fp32.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .axes import BandAxis, DenseAxis
from .base import AxisLayout, Pattern
from .opgraph import Op, build_graph

STATE_BYTES = 4  # fp32 running state


@dataclass(frozen=True)
class Linear(Pattern):
    chunk: int = 64
    causal: bool = True

    name = "linear"
    tileable = False

    def check(self, wl: Workload) -> None:
        if self.chunk <= 0:
            raise PatternError(f"--chunk must be positive, got {self.chunk}")
        if wl.q_len != wl.kv_len and wl.phase != "decode":
            raise PatternError("--pattern linear needs q_len == kv_len (self-attention) outside decode")
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError("--pattern linear models --phase fwd and decode; its backward is not modelled yet")

    def layout(self, wl: Workload) -> AxisLayout:
        # the keys each output mixes in: every earlier one (causal) or all
        rule = BandAxis(left=None, right=0) if self.causal else DenseAxis()
        return AxisLayout((wl.q_len,), (wl.kv_len,), (rule,))

    def params(self) -> dict:
        return {"chunk": self.chunk, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["linear attention: no softmax (no exponentials); feature map one op per Q/K element; "
                "no normaliser; fp32 D x Dv state per head; causal prefill in chunks computing full "
                "C x C intra-chunk products"]

    def op_graph(self, wl: Workload, pairs: int):
        return build_graph(linear_ops(self, wl))


def chunk_lengths(n: int, chunk: int) -> list[int]:
    return [min(chunk, n - start) for start in range(0, n, chunk)]


def linear_ops(p: Linear, wl: Workload) -> list[Op]:
    bh, e, eo = wl.batch * wl.q_heads, wl.element_bytes, wl.output_bytes
    d, dv, n = wl.qk_head_dim, wl.v_head_dim, wl.q_len
    q = wl.batch * wl.q_heads * n * d * e
    kv_tokens = n if wl.phase == "decode" else wl.kv_len  # decode: only the new tokens' k, v
    k = wl.batch * wl.kv_heads * kv_tokens * d * e
    v = wl.batch * wl.kv_heads * kv_tokens * dv * e
    o = bh * n * dv * eo
    state = bh * d * dv * STATE_BYTES
    feature = Op("feature_map", "linear", other_flops=bh * (n + kv_tokens) * d,
                 reads={"q": q, "k": k}, writes={"phi_qk": 0})
    if wl.phase == "decode":  # recurrent: update the state, then read it out, per new token
        return [feature,
                Op("state_update", "linear", matmul_flops=2 * bh * n * d * dv, side="pv",
                   reads={"phi_qk": 0, "v": v, "state_in": state}, writes={"state_out": state, "h": 0}),
                Op("readout", "linear", matmul_flops=2 * bh * n * d * dv, side="qk",
                   reads={"h": 0}, writes={"o": o})]
    if not p.causal:
        return [feature,
                Op("state", "linear", matmul_flops=2 * bh * n * d * dv, side="pv",
                   reads={"phi_qk": 0, "v": v}, writes={"h": 0}),
                Op("readout", "linear", matmul_flops=2 * bh * n * d * dv, side="qk",
                   reads={"h": 0}, writes={"o": o})]
    lengths = chunk_lengths(n, p.chunk)
    squares = sum(c * c for c in lengths)
    return [feature,
            Op("intra_qk", "linear", matmul_flops=2 * bh * squares * d, side="qk",
               reads={"phi_qk": 0}, writes={"s": 0}),
            Op("intra_pv", "linear", matmul_flops=2 * bh * squares * dv, side="pv", other_flops=bh * squares,
               reads={"s": 0, "v": v}, writes={"o_intra": 0}),
            # the state before chunk c is read by chunk c (2 C D Dv) and grown by it (2 C D Dv)
            Op("state_update", "linear", matmul_flops=2 * bh * n * d * dv, side="pv",
               reads={"phi_qk": 0, "v": v}, writes={"h": 0}),
            Op("inter", "linear", matmul_flops=2 * bh * n * d * dv, side="qk", other_flops=bh * n * dv,
               reads={"h": 0, "o_intra": 0}, writes={"o": o})]
