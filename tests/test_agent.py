"""Agent attention: a naive numpy run counts its own FLOPs and exponentials and must match."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import Agent

from .test_moba import Counter, assert_directional_derivative, bwd_only


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


# -- backward: the chain rule through both softmax attentions, by hand ---------------------------
def lse_rows(s):
    top = s.max(axis=1, keepdims=True)
    return top + np.log(np.exp(s - top).sum(axis=1, keepdims=True))


def agent_forward(q, k, v, agents):
    """(O, V_A, agent tokens, LSE of the aggregation, LSE of the broadcast); agents = adaptive
    average pool of Q."""
    a = np.stack([c.mean(axis=0) for c in np.array_split(q, agents)])
    v_agents = softmax(a @ k.T) @ v
    return softmax(q @ a.T) @ v_agents, v_agents, a, lse_rows(a @ k.T), lse_rows(q @ a.T)


def attention_backward(f, stem, q, k, v, o, lse, do):
    """FlashAttention-2 form on whole matrices: P recomputed from the LSE, delta = rowsum(dO O)."""
    p = np.exp(f.mm(f"bwd_{stem}qk_recompute", q, k.T) - lse)
    f.exp += p.size
    dv = f.mm(f"bwd_{stem}dv", p.T, do)
    ds = p * (f.mm(f"bwd_{stem}dp", do, v.T) - (do * o).sum(axis=1, keepdims=True))
    return f.mm(f"bwd_{stem}dq", ds, k), f.mm(f"bwd_{stem}dk", ds.T, q), dv


def naive_agent_backward(wl, agents, rng):
    f = Counter()
    for _ in range(wl.batch * wl.q_heads):
        q = rng.standard_normal((wl.q_len, wl.qk_head_dim))
        k = rng.standard_normal((wl.kv_len, wl.qk_head_dim))
        v = rng.standard_normal((wl.kv_len, wl.v_head_dim))
        do = rng.standard_normal((wl.q_len, wl.v_head_dim))
        o, v_agents, a, lse_agg, lse_bcast = agent_forward(q, k, v, agents)
        dq, da_bcast, dv_agents = attention_backward(f, "query_", q, a, v_agents, o, lse_bcast, do)
        da_agg, dk, dv = attention_backward(f, "agent_", a, k, v, v_agents, lse_agg, dv_agents)
        da = da_bcast + da_agg
        for rows, grad in zip(np.array_split(np.arange(wl.q_len), agents), da):
            dq[rows] += grad / len(rows)  # the pool's backward
        assert_directional_derivative(lambda *x: float((agent_forward(*x, agents)[0] * do).sum()), (q, k, v),
                                      (dq, dk, dv), rng)
    return f


@settings(max_examples=200)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 8), st.integers(1, 8), st.integers(1, 2),
       st.integers(1, 3), st.sampled_from(["bwd", "fwd+bwd"]), st.data())
def test_agent_backward_equals_a_naive_chain_rule_run(n, m, d, dv, batch, heads, phase, data):
    agents = data.draw(st.integers(1, n))
    wl = Workload.sequence(n, kv_len=m, batch=batch, heads=heads, head_dim=d, v_head_dim=dv, phase=phase)
    c = count(wl, Agent(agents))
    f = naive_agent_backward(wl, agents, np.random.default_rng(0))
    assert bwd_only(c.flops.by_op) == f.by_op
    assert c.flops.exp == f.exp * (2 if phase == "fwd+bwd" else 1)


def test_agent_backward_bytes_by_hand():
    # 56 x 56 = 3136 tokens, 49 agents, 4 heads of 32, fp32: the backward reads Q, K, V, O, dO
    # (3136 x 4 x 32 x 4 B each), the saved V_A (49 x 4 x 32 x 4 B), both fp32 LSEs
    # ((3136 + 49) x 4 x 4 B), and writes dQ, dK, dV.
    wl = Workload.sequence(3136, heads=4, head_dim=32, dtype="fp32", phase="bwd")
    tensor = 3136 * 4 * 32 * 4
    assert count(wl, Agent(49)).bytes.compulsory == 8 * tensor + 49 * 4 * 32 * 4 + (3136 + 49) * 4 * 4
