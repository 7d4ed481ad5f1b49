"""Linear attention: a naive chunked run counts its own FLOPs, matches attnsim's op graph, and
computes exactly the quadratic (unnormalised) causal linear attention."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.patterns import Causal, Linear


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
    with pytest.raises(PatternError, match="backward"):
        count(Workload.sequence(64, phase="bwd"), Linear())
