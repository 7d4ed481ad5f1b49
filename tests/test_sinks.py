"""Attention sinks + window: closed-form pairs and 1D block tiles equal brute force on the mask."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import Sinks
from attnsim.tiles import Tiling

from .test_graph import assert_blocks_match_brute_force


@st.composite
def sinks_case(draw):
    kv = draw(st.integers(1, 80))
    q = draw(st.sampled_from([kv, draw(st.integers(1, kv))]))
    wl = Workload.sequence(q, kv_len=kv)
    p = Sinks(window=draw(st.integers(1, kv)), sinks=draw(st.integers(0, 12)))
    tiling = Tiling((draw(st.integers(1, 12)),), (draw(st.integers(1, 12)),),
                    draw(st.sampled_from(["block-sparse", "range", "dense"])))
    return wl, p, tiling


@settings(max_examples=500)
@given(sinks_case())
def test_sinks_counts_and_tiles_equal_brute_force(case):
    wl, p, tiling = case
    mask = p.mask(wl)
    c = count(wl, p)
    assert c.pairs_per_head == int(mask.sum()) and c.touched_keys == int(mask.any(axis=0).sum())
    assert_blocks_match_brute_force(wl, p, tiling)


def test_bad_sinks_parameters():
    with pytest.raises(PatternError, match="--window 100 exceeds"):
        count(Workload.sequence(64), Sinks(window=100))
