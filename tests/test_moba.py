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
