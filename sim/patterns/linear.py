"""Linear attention: ``O = phi(Q) (phi(K)^T V)`` without a softmax (NaLaFormer, L2ViT, GLA-style).

Causal, chunked (the form fused kernels use, chunk ``C``): per chunk, the intra-chunk part is a
masked ``C x C`` quadratic attention, ``(phi(Q_c) phi(K_c)^T * mask) V_c``, computed as full
``C x C`` products; the inter-chunk part reads the running ``D x Dv`` state,
``phi(Q_c) H``, and the state grows by ``phi(K_c)^T V_c``. Non-causal: ``H = phi(K)^T V`` once,
then ``O = phi(Q) H``. Decode (recurrent): per new token, ``H += phi(k) v^T`` and ``o = phi(q) H``
— no KV cache, only the fp32 state is read and written.

Backward (``bwd``, ``fwd+bwd``), as flash-linear-attention's chunked kernels run it
(fla/ops/simple_gla/chunk.py ``chunk_simple_gla_bwd``, which ``chunk_linear_attn`` calls, and
fla/ops/common/chunk_h.py, chunk_o.py): recompute the chunk states ``H`` (``chunk_fwd_h``: one
``C x D x Dv`` product per chunk), the state gradients ``dH`` from the last chunk back
(``chunk_bwd_dh``: ``dH += phi(Q_c)^T dO_c``), then per chunk (``chunk_bwd_kernel_dqkwg``)
``dS = (dO_c V_c^T) * mask``, ``dQ = dS phi(K_c) + dO_c H^T``, ``dK = dS^T phi(Q_c) + V_c dH^T``,
and (``chunk_bwd_kernel_dv``) ``A = (phi(K_c) phi(Q_c)^T) * mask``, ``dV = A dO_c + phi(K_c) dH``:
``2 C^2 (3 D + 2 Dv)`` FLOPs per chunk of ``C`` plus five ``2 N D Dv`` state products — 2.5x the
forward, as for softmax attention. Non-causal: ``H`` recomputed, ``dH = phi(Q)^T dO``, then dQ, dK,
dV: five ``2 N D Dv`` products. The backward reads Q, K, V, dO (no O: no softmax) and is fused into
one kernel as the forward is (fla splits it into the four kernels named, whose per-chunk states go
through HBM; we price compulsory bytes).

Assumptions (said in ``assumptions``): the feature map costs one op per element of Q and K (its
backward one per element of dQ and dK); no normaliser row-sum (modern variants normalise the
output instead); the state is fp32. fla computes each product once per chunk when a kernel's tile
covers the whole head dim; with ``Dv`` or ``D`` split over tiles it recomputes ``Q K^T`` per tile
(not counted).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .axes import BandAxis, DenseAxis
from .backward import TRAINING_PHASES, phase_ops
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

    def layout(self, wl: Workload) -> AxisLayout:
        # the keys each output mixes in: every earlier one (causal) or all
        rule = BandAxis(left=None, right=0) if self.causal else DenseAxis()
        return AxisLayout((wl.q_len,), (wl.kv_len,), (rule,))

    def params(self) -> dict:
        return {"chunk": self.chunk, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["linear attention: no softmax (no exponentials); feature map one op per Q/K element; "
                "no normaliser; fp32 D x Dv state per head; causal prefill in chunks computing full "
                "C x C intra-chunk products"] + (
            ["linear attention backward: flash-linear-attention's chunked backward (states recomputed, "
             "state gradients, intra-chunk dS and A), fused into one kernel"]
            if wl.phase in TRAINING_PHASES else [])

    def op_graph(self, wl: Workload, pairs: int):
        # the backward needs no forward intermediate (no softmax): a training forward is the same
        return build_graph(phase_ops(wl, lambda training: linear_ops(self, wl), lambda: linear_backward(self, wl)))


def chunk_squares(n: int, chunk: int) -> int:
    """Sum of the squared chunk lengths of n tokens cut in chunks of ``chunk`` (the last one
    n mod chunk): full C x C intra-chunk products, O(1) for sweeps over long sequences."""
    return (n // chunk) * chunk * chunk + (n % chunk) ** 2


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
    squares = chunk_squares(n, p.chunk)
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


def linear_backward(p: Linear, wl: Workload) -> list[Op]:
    """The chunked backward of flash-linear-attention (module docstring), one fused kernel."""
    bh, e, eo = wl.batch * wl.q_heads, wl.element_bytes, wl.output_bytes
    d, dv, n = wl.qk_head_dim, wl.v_head_dim, wl.q_len
    q, do = bh * n * d * e, bh * n * dv * eo
    k, v = wl.batch * wl.kv_heads * n * d * e, wl.batch * wl.kv_heads * n * dv * e
    state, kernel = 2 * bh * n * d * dv, "bwd_linear"  # one D x Dv product per token
    first = [Op("bwd_feature_map", kernel, other_flops=2 * bh * n * d, reads={"q": q, "k": k},
                writes={"phi_qk": 0}),
             Op("bwd_state_recompute", kernel, matmul_flops=state, side="pv",
                reads={"phi_qk": 0, "v": v}, writes={"h": 0}),
             Op("bwd_dstate", kernel, matmul_flops=state, side="pv", reads={"phi_qk": 0, "do": do},
                writes={"dh": 0})]
    last = Op("bwd_feature_grad", kernel, other_flops=2 * bh * n * d,
              reads={"dphi_q": 0, "dphi_k": 0, "phi_qk": 0}, writes={"dq": q, "dk": k})
    if not p.causal:
        return first + [
            Op("bwd_dq", kernel, matmul_flops=state, side="qk", reads={"do": do, "h": 0}, writes={"dphi_q": 0}),
            Op("bwd_dk", kernel, matmul_flops=state, side="qk", reads={"v": v, "dh": 0}, writes={"dphi_k": 0}),
            Op("bwd_dv", kernel, matmul_flops=state, side="pv", reads={"phi_qk": 0, "dh": 0}, writes={"dv": v}),
            last]
    squares = bh * chunk_squares(n, p.chunk)  # full C x C products per chunk
    return first + [
        # chunk_bwd_kernel_dqkwg: dS = dO V^T (masked), dQ = dS K + dO H^T, dK = dS^T Q + V dH^T
        Op("bwd_intra_ds", kernel, matmul_flops=2 * squares * dv, side="pv", other_flops=squares,
           reads={"do": do, "v": v}, writes={"ds": 0}),
        Op("bwd_dq_intra", kernel, matmul_flops=2 * squares * d, side="qk", reads={"ds": 0, "phi_qk": 0},
           writes={"dq_intra": 0}),
        Op("bwd_dq_inter", kernel, matmul_flops=state, side="qk", other_flops=bh * n * d,
           reads={"do": do, "h": 0, "dq_intra": 0}, writes={"dphi_q": 0}),
        Op("bwd_dk_intra", kernel, matmul_flops=2 * squares * d, side="qk", reads={"ds": 0, "phi_qk": 0},
           writes={"dk_intra": 0}),
        Op("bwd_dk_inter", kernel, matmul_flops=state, side="qk", other_flops=bh * n * d,
           reads={"v": v, "dh": 0, "dk_intra": 0}, writes={"dphi_k": 0}),
        # chunk_bwd_kernel_dv: A = K Q^T (masked), dV = A dO + K dH
        Op("bwd_intra_a", kernel, matmul_flops=2 * squares * d, side="qk", other_flops=squares,
           reads={"phi_qk": 0}, writes={"a": 0}),
        Op("bwd_dv_intra", kernel, matmul_flops=2 * squares * dv, side="pv", reads={"a": 0, "do": do},
           writes={"dv_intra": 0}),
        Op("bwd_dv_inter", kernel, matmul_flops=state, side="pv", other_flops=bh * n * dv,
           reads={"phi_qk": 0, "dh": 0, "dv_intra": 0}, writes={"dv": v}),
        last]
