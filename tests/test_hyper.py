"""HyperAttention: pairs from the parameters equal the algorithm run on index sets."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.patterns import Causal, Hyper


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
