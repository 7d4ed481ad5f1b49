"""MoBA: exact counts from the parameters equal masks drawn with random gate scores."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.patterns import Causal, MoBA


@st.composite
def moba_case(draw):
    bs = draw(st.integers(1, 8))
    causal = draw(st.booleans())
    if causal:
        kv = draw(st.integers(1, 60))
        q = draw(st.sampled_from([kv, draw(st.integers(1, kv))]))  # prefill or decode-like tail
    else:
        kv = q = bs * draw(st.integers(1, 8))
    blocks = -(-kv // bs)
    return Workload.sequence(q, kv_len=kv, heads=2), MoBA(bs, draw(st.integers(1, blocks)), causal)


@settings(max_examples=300)
@given(moba_case(), st.integers(0, 2**32 - 1))
def test_pairs_equal_any_random_routing(case, seed):
    wl, p = case
    mask = p.mask(wl, np.random.default_rng(seed))
    assert p.pairs_per_head(wl) == int(mask.sum())
    # every query attends its own block and exactly min(top_k, allowed) blocks
    key_block = np.arange(wl.kv_len) // p.block_size
    for i, row in enumerate(mask):
        pos = wl.kv_len - wl.q_len + i
        allowed = pos // p.block_size + 1 if p.causal else -(-wl.kv_len // p.block_size)
        assert row[pos] and len(set(key_block[row])) == min(p.top_k, allowed)
    # gate scores: one per (query, candidate block)
    blocks = -(-wl.kv_len // p.block_size)
    candidates = [(pos // p.block_size + 1) if p.causal else blocks
                  for pos in range(wl.kv_len - wl.q_len, wl.kv_len)]
    assert p.candidate_blocks_per_head(wl) == sum(candidates)


def test_moba_counts_its_routing():
    # 128K tokens, blocks of 4096 (32 blocks), top-3, causal; 1 head of dim 128.
    wl = Workload.sequence(131072, head_dim=128)
    c = count(wl, MoBA(4096, 3, causal=True))
    gates = sum(pos // 4096 + 1 for pos in range(131072))
    assert c.flops.by_op["gate"] == 2 * gates * 128
    assert c.flops.by_op["qk"] == 2 * c.pairs_per_head * 128
    assert c.kernels == ("pool", "gate", "attention")
    r = predict(wl, MoBA(4096, 3, causal=True), "H100-SXM", baseline=Causal())
    assert r.speedup_vs_dense["tile"] is None
    # the FLOP bound charges MoBA its gate: below the pairs ratio
    assert r.speedup_vs_dense["flop"] == pytest.approx(count(wl, Causal()).flops.matmul / c.flops.matmul)
    assert r.speedup_vs_dense["flop"] < count(wl, Causal()).pairs_per_head / c.pairs_per_head


@pytest.mark.parametrize("kwargs,seq,match", [
    (dict(block_size=64, top_k=9), 512, "--top-k 9 exceeds the 8 blocks"),
    (dict(block_size=100, top_k=2), 512, "--block-size 100 must divide"),
    (dict(block_size=0, top_k=1), 512, "--block-size must be positive"),
    (dict(block_size=64, top_k=0), 512, "--top-k must be positive"),
])
def test_bad_moba_parameters_name_the_field(kwargs, seq, match):
    with pytest.raises(PatternError, match=match):
        count(Workload.sequence(seq), MoBA(**kwargs))


# -- backward: a naive row-by-row FlashAttention-2 backward counting its own FLOPs -------------
class Counter:
    """Counts 2*m*n*k per product and one exponential per element, named like attnsim's ops."""

    def __init__(self):
        self.by_op, self.exp = {}, 0

    def mm(self, name, a, b):
        self.by_op[name] = self.by_op.get(name, 0) + 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b


def rows_forward(q, k, v, entries):
    """Softmax attention of each query row over its own (key index, score bias) entries."""
    o, lse = np.zeros((len(q), v.shape[1])), np.zeros(len(q))
    for i, (keys, bias) in enumerate(entries):
        s = q[i] @ k[keys].T + bias
        lse[i] = s.max() + np.log(np.exp(s - s.max()).sum())
        o[i] = np.exp(s - lse[i]) @ v[keys]
    return o, lse


def rows_backward(f, q, k, v, o, lse, do, entries, stem=""):
    """FlashAttention-2 backward row by row: recompute P from the LSE, dV = P^T dO, dP = dO V^T,
    dS = P (dP - delta), dQ = dS K, dK = dS^T Q. Keys may repeat (np.add.at accumulates)."""
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for i, (keys, bias) in enumerate(entries):
        qi, doi = q[i:i + 1], do[i:i + 1]
        p = np.exp(f.mm(f"bwd_{stem}qk_recompute", qi, k[keys].T) + bias - lse[i])
        f.exp += p.size
        np.add.at(dv, keys, f.mm(f"bwd_{stem}dv", p.T, doi))
        ds = p * (f.mm(f"bwd_{stem}dp", doi, v[keys].T) - (doi * o[i]).sum())
        dq[i] = f.mm(f"bwd_{stem}dq", ds, k[keys])[0]
        np.add.at(dk, keys, f.mm(f"bwd_{stem}dk", ds.T, qi))
    return dq, dk, dv


def assert_directional_derivative(loss, inputs, grads, rng, eps=1e-6):
    """Central finite difference of ``loss`` along a random direction equals <grad, direction>."""
    dirs = [rng.standard_normal(x.shape) for x in inputs]
    plus = loss(*(x + eps * u for x, u in zip(inputs, dirs)))
    minus = loss(*(x - eps * u for x, u in zip(inputs, dirs)))
    expected = sum(float((g * u).sum()) for g, u in zip(grads, dirs))
    assert (plus - minus) / (2 * eps) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def moba_entries(wl, mask):
    return [(np.flatnonzero(row), 0.0) for row in mask]


def naive_moba_backward(wl, p, rng):
    """Per (batch, query head): random data, one routing draw (gate not differentiated), the
    backward counted and checked against a finite difference of sum(O * dO)."""
    f, group = Counter(), wl.q_heads // wl.kv_heads
    entries = moba_entries(wl, p.mask(wl, rng))
    for _ in range(wl.batch):
        k = rng.standard_normal((wl.kv_heads, wl.kv_len, wl.qk_head_dim))
        v = rng.standard_normal((wl.kv_heads, wl.kv_len, wl.v_head_dim))
        for h in range(wl.q_heads):
            q = rng.standard_normal((wl.q_len, wl.qk_head_dim))
            do = rng.standard_normal((wl.q_len, wl.v_head_dim))
            kh, vh = k[h // group], v[h // group]
            o, lse = rows_forward(q, kh, vh, entries)
            grads = rows_backward(f, q, kh, vh, o, lse, do, entries)
            assert_directional_derivative(lambda *x: float((rows_forward(*x, entries)[0] * do).sum()),
                                          (q, kh, vh), grads, rng)
    return f


@st.composite
def moba_training_case(draw):
    bs = draw(st.integers(1, 6))
    causal = draw(st.booleans())
    n = draw(st.integers(1, 30)) if causal else bs * draw(st.integers(1, 5))
    kv_heads = draw(st.sampled_from([1, 2]))
    wl = Workload.sequence(n, batch=draw(st.integers(1, 2)), heads=kv_heads * draw(st.integers(1, 2)),
                           kv_heads=kv_heads, head_dim=draw(st.integers(1, 6)), v_head_dim=draw(st.integers(1, 6)),
                           phase=draw(st.sampled_from(["bwd", "fwd+bwd"])))
    return wl, MoBA(bs, draw(st.integers(1, -(-n // bs))), causal)


def bwd_only(by_op):
    return {k: v for k, v in by_op.items() if k.startswith("bwd_") and v}


@settings(max_examples=200)
@given(moba_training_case(), st.integers(0, 2**32 - 1))
def test_moba_backward_equals_a_naive_chain_rule_run(case, seed):
    wl, p = case
    c = count(wl, p)
    f = naive_moba_backward(wl, p, np.random.default_rng(seed))
    assert bwd_only(c.flops.by_op) == f.by_op
    fwd = count(wl.with_(phase="fwd"), p)
    assert c.flops.exp == f.exp + (fwd.flops.exp if wl.phase == "fwd+bwd" else 0)
    # three matmuls over D (S, dQ, dK) and two over Dv (dV, dP) per pair; the gate is not differentiated
    assert sum(f.by_op.values()) == 3 * fwd.flops.by_op["qk"] + 2 * fwd.flops.by_op["pv"]
    assert not any(name.startswith(("bwd_gate", "bwd_pool", "bwd_top")) for name in c.flops.by_op)


def test_moba_backward_bytes_by_hand():
    # 64 tokens, blocks of 8, top-3, causal, 2 heads of dim 16, bf16. The backward reads Q, K, V,
    # O, dO (64 x 16 x 2 heads x 2 B = 4096 B each), the fp32 LSE (64 x 2 x 4 = 512 B) and the
    # int32 block ids (64 x 2 x 3 x 4 = 1536 B), and writes dQ, dK, dV (4096 B each).
    wl = Workload.sequence(64, heads=2, head_dim=16, phase="bwd")
    c = count(wl, MoBA(8, 3, causal=True))
    assert c.bytes.compulsory == 8 * 4096 + 512 + 1536
    assert c.kernels == ("bwd_delta", "bwd_attention", "bwd_dq_convert")
    # fwd+bwd: the training forward also writes the LSE and the block ids it keeps
    both = count(wl.with_(phase="fwd+bwd"), MoBA(8, 3, causal=True))
    fwd = count(wl.with_(phase="fwd"), MoBA(8, 3, causal=True))
    assert both.bytes.compulsory == fwd.bytes.compulsory + 512 + 1536 + c.bytes.compulsory
    assert both.kernels == ("pool", "gate", "attention") + c.kernels


def test_moba_backward_refuses_cross_attention():
    with pytest.raises(PatternError, match="--phase bwd of --pattern moba trains self-attention"):
        count(Workload.sequence(32, kv_len=64, phase="bwd"), MoBA(8, 2, causal=True))
