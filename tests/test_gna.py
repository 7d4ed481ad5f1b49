"""Generalized neighborhood attention: exact counts and masks against NATTEN's own rule."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import Neighborhood

from .natten_reference import natten_mask


@st.composite
def gna_case(draw, max_dim=9, max_tokens=400):
    rank = draw(st.integers(1, 3))
    grid = tuple(draw(st.integers(1, max_dim if rank > 1 else 40)) for _ in range(rank))
    if math.prod(grid) > max_tokens:
        grid = grid[:1]
    window, dilation, stride, causal = [], [], [], []
    for length in grid:
        d = draw(st.integers(1, length))
        k = draw(st.integers(1, length // d))
        window.append(k)
        dilation.append(d)
        stride.append(draw(st.integers(1, k)))
        causal.append(draw(st.booleans()))
    wl = Workload.on_grid(grid, heads=draw(st.integers(1, 3)), head_dim=16)
    return wl, Neighborhood(tuple(window), tuple(dilation), tuple(stride), tuple(causal))


@settings(max_examples=1000)
@given(gna_case())
def test_gna_mask_and_counts_match_natten_rule(case):
    wl, pattern = case
    reference = natten_mask(wl.grid, *(pattern._per_dim(f, len(wl.grid))
                                       for f in ("window", "dilation", "stride", "causal")))
    assert np.array_equal(pattern.mask(wl), reference)
    c = count(wl, pattern)
    assert c.pairs_per_head == int(reference.sum())
    assert c.touched_keys == int(reference.any(axis=0).sum())


def test_hunyuan_gna_density_is_unchanged_by_stride():
    # Non-causal stride only changes which window a query uses, never its size.
    wl = Workload.on_grid((30, 48, 80), heads=24)
    na = count(wl, Neighborhood((18, 24, 24)))
    gna = count(wl, Neighborhood((18, 24, 24), stride=(16, 8, 8)))
    assert na.pairs_per_head == gna.pairs_per_head == 115200 * 18 * 24 * 24


def test_causal_1d_na_pairs_closed_form():
    # stride 1: query i sees min(i+1, k) keys -> k(k+1)/2 + (L-k)k.
    L, k = 1000, 64
    c = count(Workload.on_grid((L,)), Neighborhood(k, causal=True))
    assert c.pairs_per_head == k * (k + 1) // 2 + (L - k) * k


@pytest.mark.parametrize("kwargs,match", [
    (dict(window=(8,), stride=(9,)), r"stride\[0\]=9 is larger than window\[0\]=8"),
    (dict(window=(8,), dilation=(5,)), r"window\[0\]=8 x dilation\[0\]=5 exceeds tokens\[0\]=32"),
    (dict(window=(8, 8)), r"window has 2 dims but the tokens grid has 1"),
    (dict(window=(0,)), r"window entries must be positive"),
])
def test_bad_gna_parameters_name_the_field(kwargs, match):
    with pytest.raises(PatternError, match=match):
        count(Workload.on_grid((32,)), Neighborhood(**kwargs))
