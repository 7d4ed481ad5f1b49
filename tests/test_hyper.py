"""HyperAttention: pairs from the parameters equal the algorithm run on index sets."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.patterns import Causal, Hyper

from .test_moba import Counter, assert_directional_derivative, bwd_only, rows_backward, rows_forward


@settings(max_examples=200)
@given(st.integers(0, 5), st.sampled_from([1, 2, 4, 8]), st.integers(1, 20), st.integers(1, 64),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_hyper_pairs_equal_the_recursion_on_index_sets(depth, block, sample, min_len, causal, seed):
    n = block * 4 * 2**depth
    p = Hyper(block, sample, max(min_len, block), causal=causal)
    assert count(Workload.sequence(n), p).pairs_per_head == p.reference_pairs(n, np.random.default_rng(seed))


def test_hyperattention_paper_setting():
    # 131K tokens, causal, 32 heads x 64 (hyper-attn benchmark_single_attention.py): the exact
    # causal FLOP bound must exceed the paper's measured 5x for the claim to be possible.
    wl = Workload.sequence(131072, heads=32, head_dim=64)
    r = predict(wl, Hyper(), "A100-SXM4-80GB", baseline=Causal())
    assert r.speedup_vs_dense["flop"] > 5
    assert r.pattern.counts.kernels == ("lsh", "attention")


def test_hyper_refuses_uneven_halves():
    with pytest.raises(PatternError, match="halves evenly"):
        count(Workload.sequence(10000), Hyper())


# -- backward: the algorithm's computed entries per query, then a row-wise chain rule ---------
def hyper_entries(p, n, rng):
    """Per query, the (key, score bias) entries HyperAttention computes, merged as the repo's
    add_self_attentions does: exact causal leaves; sorted blocks; sampled keys with bias
    log(n_keys / samples), masked (-inf) when in the query's own block (computed all the same)."""
    keys, bias = [[] for _ in range(n)], [[] for _ in range(n)]

    def add(i, ks, bs):
        keys[i].extend(ks)
        bias[i].extend(bs)

    def noncausal(q, k):
        if len(q) < p.min_seq_len:  # forward_no_causal_mask: exact when min_seq_len > n_query
            for i in q:
                add(i, k, [0.0] * len(k))
            return
        qs, ks = rng.permutation(q), rng.permutation(k)  # any LSH order
        sample = rng.choice(len(k), size=min(p.sample_size, len(k)), replace=False)  # sorted positions
        for pos, i in enumerate(qs):
            block = pos // p.block_size
            add(i, ks[block * p.block_size:(block + 1) * p.block_size], [0.0] * p.block_size)
            add(i, ks[sample], np.where(sample // p.block_size == block, -np.inf, np.log(len(k) / len(sample))))

    def causal(idx):
        if len(idx) <= p.min_seq_len:
            for pos, i in enumerate(idx):
                add(i, idx[:pos + 1], [0.0] * (pos + 1))
            return
        top, bottom = idx[:len(idx) // 2], idx[len(idx) // 2:]
        causal(top)
        causal(bottom)
        noncausal(bottom, top)

    (causal if p.causal else lambda idx: noncausal(idx, idx))(np.arange(n))
    return [(np.array(k, dtype=int), np.array(b)) for k, b in zip(keys, bias)]


@settings(max_examples=200)
@given(st.integers(0, 2), st.sampled_from([1, 2, 4]), st.integers(1, 12), st.integers(1, 24), st.booleans(),
       st.integers(1, 4), st.integers(1, 4), st.sampled_from(["bwd", "fwd+bwd"]), st.integers(0, 2**32 - 1))
def test_hyper_backward_equals_a_naive_chain_rule_run(depth, block, sample, min_len, causal, d, dv, phase, seed):
    n, rng = block * 4 * 2**depth, np.random.default_rng(seed)
    p = Hyper(block, sample, max(min_len, block), causal=causal)
    wl = Workload.sequence(n, heads=2, kv_heads=1, head_dim=d, v_head_dim=dv, phase=phase)
    entries, f = hyper_entries(p, n, rng), Counter()
    k, v = rng.standard_normal((n, d)), rng.standard_normal((n, dv))
    for _ in range(wl.q_heads):
        q, do = rng.standard_normal((n, d)), rng.standard_normal((n, dv))
        o, lse = rows_forward(q, k, v, entries)
        grads = rows_backward(f, q, k, v, o, lse, do, entries)
        assert_directional_derivative(lambda *x: float((rows_forward(*x, entries)[0] * do).sum()), (q, k, v),
                                      grads, rng)
    c = count(wl, p)
    assert c.pairs_per_head == sum(len(keys) for keys, _ in entries)
    assert bwd_only(c.flops.by_op) == f.by_op
    assert c.flops.exp == f.exp * (2 if phase == "fwd+bwd" else 1)
    assert "bwd_lsh_hash" not in c.flops.by_op  # the sort only yields indices: no gradient


def test_hyper_backward_bytes_by_hand():
    # 16K tokens causal, defaults (blocks 256, 256 samples, min_seq_len 4096): two levels whose
    # lower-left quarters are HyperAttention (8192 queries, then 2 x 4096: the repo runs it from
    # min_seq_len queries on), each hashing 16384 rows. 32 heads of 64, bf16: the backward reads
    # Q, K, V, O, dO (16384 x 32 x 64 x 2 B each), the fp32 LSE (16384 x 32 x 4 B) and the int32
    # sort permutation of both levels (2 x 16384 x 32 x 4 B), writes dQ, dK, dV.
    wl = Workload.sequence(16384, heads=32, head_dim=64, phase="bwd")
    tensor = 16384 * 32 * 64 * 2
    assert count(wl, Hyper()).bytes.compulsory == 8 * tensor + 3 * 16384 * 32 * 4


def test_hyper_refuses_decode():
    with pytest.raises(PatternError, match="no decode"):
        count(Workload.sequence(8192, phase="decode"), Hyper())
