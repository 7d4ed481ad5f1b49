"""Agent attention (Han et al. 2023, arXiv 2312.08874): ``A`` agent tokens, pooled from the
queries, first aggregate the keys and values (``V_A = softmax(A K^T) V``), then broadcast to
the queries (``O = softmax(Q A^T) V_A``): two softmax attentions of size ``A x M`` and ``N x A``
instead of one ``N x M``. Pairs are the ``A (M + N)`` scores; the depthwise convolution Agent
Attention adds on V is not counted (said in ``assumptions``).

Backward (``bwd``, ``fwd+bwd``): the chain rule through both softmax attentions, each in the
FlashAttention-2 form (recompute its scores from the saved LSE, five matmuls per score): first
the broadcast attention (queries over agents; its dV is dV_A, its dK the agents' gradient from
the broadcast), then the aggregation (agents over keys, with dV_A as its output gradient and V_A
as its output); the agents' two gradients add up and flow back through the pool into dQ. The
forward keeps V_A and both LSEs; the agents are re-pooled (one add per Q element). The official
code (github LeapLabTHU/Agent-Attention) is plain PyTorch autograd: same matmuls, but it keeps
the probabilities instead of recomputing them (inferred: we price the recompute form, as for
every softmax backward here). Fused into one kernel, as the forward is.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .backward import TRAINING_PHASES, attention_backward, phase_ops
from .base import Pattern
from .opgraph import LSE_BYTES, Op, build_graph



@dataclass(frozen=True)
class Agent(Pattern):
    agents: int = 49  # Agent-Swin uses 7x7 = 49 agent tokens

    name = "agent"
    tileable = False

    def check(self, wl: Workload) -> None:
        if self.agents <= 0:
            raise PatternError(f"--agents must be positive, got {self.agents}")
        if self.agents > wl.q_len:
            raise PatternError(f"--agents {self.agents} exceeds the {wl.q_len} queries they are pooled from")
        if wl.phase == "decode":
            raise PatternError("--pattern agent models --phase fwd, bwd and fwd+bwd (agents pool every query: "
                               "no decode)")

    def layout(self, wl: Workload):
        raise PatternError("agent attention has no (query, key) mask: its scores go through agent tokens")

    def params(self) -> dict:
        return {"agents": self.agents}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["agent attention: agents = adaptive average pool of Q (one add per Q element); two "
                "softmax attentions (agents over keys, queries over agents); depthwise conv on V not counted"] + (
            ["agent backward: FlashAttention-2 form of both attentions (scores recomputed from saved LSEs), "
             "V_A saved, agents re-pooled"] if wl.phase in TRAINING_PHASES else [])

    def pairs_per_head(self, wl: Workload) -> int:
        return self.agents * (wl.kv_len + wl.q_len)  # A x M aggregation + N x A broadcast scores

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len

    def op_graph(self, wl: Workload, pairs: int):
        return build_graph(phase_ops(wl, lambda training: _forward(self, wl, training),
                                     lambda: _backward(self, wl)))

    # -- closed forms (attnsim formula agent) ------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Agent":
        return cls()

    def formula_values(self, wl: Workload) -> dict:
        return {"A": self.agents}

    def closed_form(self, sp, sym: dict, phase: str):
        b, h, hkv, n, m, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo"))
        a = sp.Symbol("A", positive=True, integer=True)
        if phase == "decode":
            raise PatternError("--pattern agent has no decode phase: use --phase fwd, bwd or fwd+bwd")
        pairs = a * (m + n)
        io = e * (b * h * n * d + b * hkv * m * (d + dv)) + eo * b * h * n * dv  # Q, K, V in; O out
        saved = e * b * h * a * dv + LSE_BYTES * b * h * (n + a)  # V_A and both LSEs, fwd -> bwd
        fwd = (2 * b * h * pairs * (d + dv), b * h * pairs, io)
        bwd = (2 * b * h * pairs * (3 * d + 2 * dv), b * h * pairs, 2 * io + saved)
        matmul, exp, compulsory = {"fwd": fwd, "bwd": bwd,
                                   "fwd+bwd": tuple(f + g for f, g in zip(fwd, bwd))}[phase]
        if phase == "fwd+bwd":
            compulsory += saved  # the training forward writes them
        exprs = {"pairs_per_head": pairs, "matmul_flops": sp.factor(matmul), "exp": sp.factor(exp),
                 "compulsory_bytes": sp.factor(compulsory)}
        return exprs, {"A": "agent tokens"}, ("A <= N",)


def _sizes(wl: Workload, agents: int) -> dict[str, int]:
    """Bytes of each tensor (totals over batch and heads)."""
    bh, e, eo, a = wl.batch * wl.q_heads, wl.element_bytes, wl.output_bytes, agents
    n, m, d, dv = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
    return {"q": bh * n * d * e, "k": wl.batch * wl.kv_heads * m * d * e, "v": wl.batch * wl.kv_heads * m * dv * e,
            "o": bh * n * dv * eo, "v_agents": bh * a * dv * e, "lse": bh * n * LSE_BYTES,
            "lse_agents": bh * a * LSE_BYTES}


def _forward(p: Agent, wl: Workload, training: bool) -> list[Op]:
    bh, a, s = wl.batch * wl.q_heads, p.agents, _sizes(wl, p.agents)
    n, m, d, dv = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
    keep = ({"saved_v_agents": s["v_agents"], "lse_agents": s["lse_agents"]}, {"lse": s["lse"]}) if training \
        else ({}, {})
    return [
        Op("pool_agents", "agent", other_flops=bh * n * d, reads={"q": s["q"]}, writes={"agents": 0}),
        Op("agent_qk", "agent", matmul_flops=2 * bh * a * m * d, side="qk", exp=bh * a * m,
           other_flops=4 * bh * a * m, reads={"agents": 0, "k": s["k"]}, writes={"p_agg": 0}),
        Op("agent_pv", "agent", matmul_flops=2 * bh * a * m * dv, side="pv",
           reads={"p_agg": 0, "v": s["v"]}, writes={"v_agents": 0, **keep[0]}),
        Op("query_qk", "agent", matmul_flops=2 * bh * n * a * d, side="qk", exp=bh * n * a,
           other_flops=4 * bh * n * a, reads={"q": s["q"], "agents": 0}, writes={"p_bcast": 0}),
        Op("query_pv", "agent", matmul_flops=2 * bh * n * a * dv, side="pv",
           reads={"p_bcast": 0, "v_agents": 0}, writes={"o": s["o"], **keep[1]}),
    ]


def _backward(p: Agent, wl: Workload) -> list[Op]:
    bh, a, s, kernel = wl.batch * wl.q_heads, p.agents, _sizes(wl, p.agents), "bwd_agent"
    n, m, d, dv = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
    v_agents = {"saved_v_agents": s["v_agents"]}
    # broadcast attention: queries Q over keys = agents, values = V_A; output O
    bcast = {"q": {"q": s["q"]}, "k": {"agents": 0}, "v": v_agents, "o": {"o": s["o"]}, "do": {"do": s["o"]},
             "lse": {"lse": s["lse"]}, "dq": {"dq_bcast": 0}, "dk": {"d_agents_bcast": 0}, "dv": {"dv_agents": 0}}
    # aggregation attention: agents over K, V; output V_A, its gradient dV_A from the broadcast
    agg = {"q": {"agents": 0}, "k": {"k": s["k"]}, "v": {"v": s["v"]}, "o": v_agents, "do": {"dv_agents": 0},
           "lse": {"lse_agents": s["lse_agents"]}, "dq": {"d_agents_agg": 0}, "dk": {"dk": s["k"]},
           "dv": {"dv": s["v"]}}
    return [
        Op("bwd_pool_agents", kernel, other_flops=bh * n * d, reads={"q": s["q"]}, writes={"agents": 0}),
        *attention_backward(bcast, bh * n * a, bh * n, d, dv, stem="query_", kernel=kernel),
        *attention_backward(agg, bh * a * m, bh * a, d, dv, stem="agent_", kernel=kernel),
        # dA = dA_bcast + dA_agg, scaled by 1 / pool size, added into every pooled query's dQ
        Op("bwd_pool_grad", kernel, other_flops=bh * (2 * a * d + n * d),
           reads={"d_agents_bcast": 0, "d_agents_agg": 0, "dq_bcast": 0}, writes={"dq": s["q"]}),
    ]
