"""Every closed-form count equals a brute-force count over the materialised mask."""
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import count
from attnsim.patterns.axes import clamped_arith_sum

from .strategies import causal_case, dense_case, neighborhood_case, sliding_case

EXAMPLES = 500


def _check_against_mask(wl, pattern):
    mask = pattern.mask(wl)
    c = count(wl, pattern)
    assert c.pairs_per_head == int(mask.sum())
    assert c.touched_keys == int(mask.any(axis=0).sum())
    assert c.attended_pairs == int(mask.sum()) * wl.batch * wl.q_heads
    assert c.flops.exp == c.attended_pairs * (2 if wl.phase == "fwd+bwd" else 1)


@settings(max_examples=EXAMPLES)
@given(dense_case())
def test_dense_matches_bruteforce(case):
    _check_against_mask(*case)


@settings(max_examples=EXAMPLES)
@given(causal_case())
def test_causal_matches_bruteforce(case):
    _check_against_mask(*case)


@settings(max_examples=EXAMPLES)
@given(sliding_case())
def test_sliding_matches_bruteforce(case):
    _check_against_mask(*case)


@settings(max_examples=EXAMPLES)
@given(neighborhood_case())
def test_neighborhood_matches_bruteforce(case):
    wl, pattern = case
    _check_against_mask(wl, pattern)
    # NATTEN's defining property: every query sees exactly prod(window) keys.
    assert set(pattern.mask(wl).sum(axis=1)) == {math.prod(pattern.window)}


@settings(max_examples=EXAMPLES)
@given(st.integers(0, 60), st.integers(-80, 80), st.integers(0, 60))
def test_clamped_arith_sum(n, a, hi):
    assert clamped_arith_sum(n, a, hi) == sum(min(max(a + i, 0), hi) for i in range(n))


def test_neighborhood_1d_window_positions_match_natten_formula():
    """Hand-checked rows: L=7, window 3 -> starts clamp(i-1, 0, 4); dilation 2 on L=7:
    group r=0 is positions 0,2,4,6 (sub-length 4), r=1 is 1,3,5 (sub-length 3)."""
    from attnsim import Workload
    from attnsim.patterns import Neighborhood

    rows = Neighborhood(window=3).mask(Workload.on_grid((7,)))
    assert [list(np.flatnonzero(r)) for r in rows] == [
        [0, 1, 2], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6], [4, 5, 6]]
    rows = Neighborhood(window=3, dilation=2).mask(Workload.on_grid((7,)))
    assert [list(np.flatnonzero(r)) for r in rows] == [
        [0, 2, 4], [1, 3, 5], [0, 2, 4], [1, 3, 5], [2, 4, 6], [1, 3, 5], [2, 4, 6]]
