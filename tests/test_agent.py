"""Agent attention: a naive numpy run counts its own FLOPs and exponentials and must match."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import Agent


def softmax(x):
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return x / x.sum(axis=-1, keepdims=True)


def naive_agent(wl, agents, rng):
    flops, exps = {}, 0

    def mm(name, a, b):
        flops[name] = flops.get(name, 0) + 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    for _ in range(wl.batch * wl.q_heads):
        q = rng.standard_normal((wl.q_len, wl.qk_head_dim))
        k = rng.standard_normal((wl.kv_len, wl.qk_head_dim))
        v = rng.standard_normal((wl.kv_len, wl.v_head_dim))
        a = np.stack([c.mean(axis=0) for c in np.array_split(q, agents)])  # adaptive average pool
        s_agg = mm("agent_qk", a, k.T)
        v_agents = mm("agent_pv", softmax(s_agg), v)
        s_b = mm("query_qk", q, a.T)
        mm("query_pv", softmax(s_b), v_agents)
        exps += s_agg.size + s_b.size
    return flops, exps


@settings(max_examples=200)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 8), st.integers(1, 8), st.integers(1, 2),
       st.integers(1, 3), st.data())
def test_agent_counts_equal_a_naive_run(n, m, d, dv, batch, heads, data):
    agents = data.draw(st.integers(1, n))
    wl = Workload.sequence(n, kv_len=m, batch=batch, heads=heads, head_dim=d, v_head_dim=dv)
    c = count(wl, Agent(agents))
    flops, exps = naive_agent(wl, agents, np.random.default_rng(0))
    assert {k: v for k, v in c.flops.by_op.items() if v} == flops
    assert c.flops.exp == exps


def test_bad_agent_parameters():
    with pytest.raises(PatternError, match="--agents 99 exceeds"):
        count(Workload.sequence(64), Agent(99))
