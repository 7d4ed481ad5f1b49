"""Agent attention (Han et al. 2023, arXiv 2312.08874): ``A`` agent tokens, pooled from the
queries, first aggregate the keys and values (``V_A = softmax(A K^T) V``), then broadcast to
the queries (``O = softmax(Q A^T) V_A``): two softmax attentions of size ``A x N`` and ``N x A``
instead of one ``N x N``. Pairs are the ``2 N A`` scores; the depthwise convolution Agent
Attention adds on V is not counted (said in ``assumptions``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .base import Pattern
from .opgraph import Op, build_graph


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
        if wl.phase not in ("fwd",):
            raise PatternError("--pattern agent models --phase fwd only")

    def layout(self, wl: Workload):
        raise PatternError("agent attention has no (query, key) mask: its scores go through agent tokens")

    def params(self) -> dict:
        return {"agents": self.agents}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["agent attention: agents = adaptive average pool of Q (one add per Q element); two "
                "softmax attentions (agents over keys, queries over agents); depthwise conv on V not counted"]

    def pairs_per_head(self, wl: Workload) -> int:
        return self.agents * (wl.kv_len + wl.q_len)  # A x M aggregation + N x A broadcast scores

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len

    def op_graph(self, wl: Workload, pairs: int):
        bh, e, eo, a = wl.batch * wl.q_heads, wl.element_bytes, wl.output_bytes, self.agents
        n, m, d, dv = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
        q = bh * n * d * e
        return build_graph([
            Op("pool_agents", "agent", other_flops=bh * n * d, reads={"q": q}, writes={"agents": 0}),
            Op("agent_qk", "agent", matmul_flops=2 * bh * a * m * d, side="qk", exp=bh * a * m,
               other_flops=4 * bh * a * m,
               reads={"agents": 0, "k": wl.batch * wl.kv_heads * m * d * e}, writes={"p_agg": 0}),
            Op("agent_pv", "agent", matmul_flops=2 * bh * a * m * dv, side="pv",
               reads={"p_agg": 0, "v": wl.batch * wl.kv_heads * m * dv * e}, writes={"v_agents": 0}),
            Op("query_qk", "agent", matmul_flops=2 * bh * n * a * d, side="qk", exp=bh * n * a,
               other_flops=4 * bh * n * a, reads={"q": q, "agents": 0}, writes={"p_bcast": 0}),
            Op("query_pv", "agent", matmul_flops=2 * bh * n * a * dv, side="pv",
               reads={"p_bcast": 0, "v_agents": 0}, writes={"o": bh * n * dv * eo}),
        ])
