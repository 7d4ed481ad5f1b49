"""Linear attention: a naive chunked run counts its own FLOPs, matches attnsim's op graph, and
computes exactly the quadratic (unnormalised) causal linear attention."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.patterns import Causal, Linear

from .test_moba import Counter, assert_directional_derivative, bwd_only


def naive_linear(wl, p, rng):
    flops = {}

    def mm(name, a, b):
        flops[name] = flops.get(name, 0) + 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    d, dv, n = wl.qk_head_dim, wl.v_head_dim, wl.q_len
    for _ in range(wl.batch * wl.q_heads):
        q, k, v = (np.abs(rng.standard_normal((n, x))) for x in (d, d, dv))  # phi >= 0
        if p.causal:
            out, h = np.zeros((n, dv)), np.zeros((d, dv))
            for s in range(0, n, p.chunk):
                qc, kc, vc = q[s:s + p.chunk], k[s:s + p.chunk], v[s:s + p.chunk]
                scores = mm("intra_qk", qc, kc.T) * np.tril(np.ones((len(qc), len(qc))))
                intra = mm("intra_pv", scores, vc)
                out[s:s + p.chunk] = intra + mm("inter", qc, h)
                h = h + mm("state_update", kc.T, vc)
            expected = (q @ k.T * np.tril(np.ones((n, n)))) @ v
        else:
            out = mm("readout", q, mm("state", k.T, v))
            expected = (q @ k.T) @ v
        np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)
    return flops


@settings(max_examples=200)
@given(st.integers(1, 40), st.integers(1, 12), st.integers(1, 6), st.integers(1, 6), st.booleans(),
       st.integers(1, 2), st.integers(1, 3))
def test_linear_flops_equal_a_naive_chunked_run(n, chunk, d, dv, causal, batch, heads):
    wl = Workload.sequence(n, batch=batch, heads=heads, head_dim=d, v_head_dim=dv)
    p = Linear(chunk=chunk, causal=causal)
    c = count(wl, p)
    by_op = {k: v for k, v in c.flops.by_op.items() if v}
    assert by_op == naive_linear(wl, p, np.random.default_rng(0))
    assert c.flops.exp == 0


def test_linear_decode_reads_the_state_not_a_kv_cache():
    # 1M-token context, 32 heads, d = 128: causal softmax decode reads 2 * 1M * 32 * 128 * 2 B of
    # KV cache; linear decode reads and writes a 128 x 128 fp32 state per head (64 KiB).
    wl = Workload.sequence(1 << 20, heads=32, head_dim=128, phase="decode")
    lin, soft = count(wl, Linear()), count(wl, Causal())
    assert lin.bytes.by_tensor["state_in"] == lin.bytes.by_tensor["state_out"] == 32 * 128 * 128 * 4
    assert soft.bytes.by_tensor["k"] == (1 << 20) * 32 * 128 * 2
    assert predict(wl, Linear(), "H100-SXM", baseline=Causal()).speedup_vs_dense["roofline"] > 100


def test_bad_linear_parameters_name_the_field():
    with pytest.raises(PatternError, match="--chunk"):
        count(Workload.sequence(64), Linear(chunk=0))
    with pytest.raises(PatternError, match="q_len == kv_len"):
        count(Workload.sequence(64, kv_len=128, phase="bwd"), Linear())


# -- backward: flash-linear-attention's chunked backward, by hand ------------------------------
def linear_output(q, k, v, causal):
    """The quadratic (unnormalised) form: ((Q K^T) * mask) V."""
    scores = q @ k.T
    return (scores * np.tril(np.ones(scores.shape)) if causal else scores) @ v


def chunked_backward(f, q, k, v, do, chunk):
    """fla's chunk_simple_gla_bwd without gates: recompute the states H_c (before chunk c), the
    state gradients dH_c (after chunk c, from the last chunk back), then per chunk the intra-chunk
    dS = (dO V^T) * mask and A = (K Q^T) * mask^T and the inter-chunk terms."""
    n, d, dv_dim = len(q), q.shape[1], v.shape[1]
    starts = list(range(0, n, chunk))
    h, states = np.zeros((d, dv_dim)), []
    for s in starts:  # chunk_fwd_h
        states.append(h)
        h = h + f.mm("bwd_state_recompute", k[s:s + chunk].T, v[s:s + chunk])
    dh, dstates = np.zeros((d, dv_dim)), {}
    for s in reversed(starts):  # chunk_bwd_dh
        dstates[s] = dh
        dh = dh + f.mm("bwd_dstate", q[s:s + chunk].T, do[s:s + chunk])
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for s, h in zip(starts, states):
        c = slice(s, s + chunk)
        mask = np.tril(np.ones((len(q[c]), len(q[c]))))
        ds = f.mm("bwd_intra_ds", do[c], v[c].T) * mask  # chunk_bwd_kernel_dqkwg
        dq[c] = f.mm("bwd_dq_intra", ds, k[c]) + f.mm("bwd_dq_inter", do[c], h.T)
        dk[c] = f.mm("bwd_dk_intra", ds.T, q[c]) + f.mm("bwd_dk_inter", v[c], dstates[s].T)
        a = f.mm("bwd_intra_a", k[c], q[c].T) * mask.T  # chunk_bwd_kernel_dv
        dv[c] = f.mm("bwd_dv_intra", a, do[c]) + f.mm("bwd_dv_inter", k[c], dstates[s])
    return dq, dk, dv


def global_backward(f, q, k, v, do):
    """Non-causal: H = K^T V recomputed, dH = Q^T dO, then dQ = dO H^T, dK = V dH^T, dV = K dH."""
    h, dh = f.mm("bwd_state_recompute", k.T, v), f.mm("bwd_dstate", q.T, do)
    return f.mm("bwd_dq", do, h.T), f.mm("bwd_dk", v, dh.T), f.mm("bwd_dv", k, dh)


@settings(max_examples=200)
@given(st.integers(1, 40), st.integers(1, 12), st.integers(1, 6), st.integers(1, 6), st.booleans(),
       st.integers(1, 2), st.integers(1, 3), st.sampled_from(["bwd", "fwd+bwd"]))
def test_linear_backward_equals_a_naive_chunked_run(n, chunk, d, dv, causal, batch, heads, phase):
    wl = Workload.sequence(n, batch=batch, heads=heads, head_dim=d, v_head_dim=dv, phase=phase)
    p, f, rng = Linear(chunk=chunk, causal=causal), Counter(), np.random.default_rng(0)
    for _ in range(batch * heads):
        q, k, v = (np.abs(rng.standard_normal((n, x))) for x in (d, d, dv))  # phi >= 0
        do = rng.standard_normal((n, dv))
        grads = chunked_backward(f, q, k, v, do, chunk) if causal else global_backward(f, q, k, v, do)
        # autograd-free: d/dQ of sum(((Q K^T) * mask) V * dO) is ((dO V^T) * mask) K, and so on
        mask = np.tril(np.ones((n, n))) if causal else np.ones((n, n))
        ds = (do @ v.T) * mask
        for got, want in zip(grads, (ds @ k, ds.T @ q, ((q @ k.T) * mask).T @ do)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
        assert_directional_derivative(lambda *x: float((linear_output(*x, causal) * do).sum()), (q, k, v),
                                      grads, rng)
    c = count(wl, p)
    assert bwd_only(c.flops.by_op) == f.by_op
    assert c.flops.exp == 0
    fwd = count(wl.with_(phase="fwd"), p).flops.matmul
    if d == dv:  # same shapes on both sides: 2.5x the forward, as a softmax backward
        assert 2 * sum(f.by_op.values()) == 5 * fwd


def test_linear_backward_bytes_by_hand():
    # 4K tokens, 16 heads of 64, bf16: the backward reads Q, K, V, dO and writes dQ, dK, dV, each
    # 4096 x 16 x 64 x 2 B = 8 MiB; no O and no LSE (no softmax).
    wl = Workload.sequence(4096, heads=16, head_dim=64, phase="bwd")
    c = count(wl, Linear())
    assert c.bytes.compulsory == 7 * 4096 * 16 * 64 * 2
    assert set(c.bytes.by_tensor) == {"q", "k", "v", "do", "dq", "dk", "dv"}


@given(n=st.integers(1, 5000), chunk=st.integers(1, 700))
def test_chunk_squares_equal_the_chunks_counted_one_by_one(n, chunk):
    from attnsim.patterns.linear import chunk_squares

    lengths = [min(chunk, n - start) for start in range(0, n, chunk)]
    assert sum(lengths) == n and chunk_squares(n, chunk) == sum(c * c for c in lengths)
