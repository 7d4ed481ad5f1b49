"""Block-sparse top-k: pairs and per-block tile counts equal masks drawn with random block
scores; the closed form equals the exact count."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.patterns import BlockTopK
from attnsim.tiles import Tiling

from .forms import assert_closed_form_equals_count


@st.composite
def topk_case(draw):
    b, causal = draw(st.integers(1, 8)), draw(st.booleans())
    n = draw(st.integers(1, 60)) if causal else b * draw(st.integers(1, 8))
    blocks = -(-n // b)
    return Workload.sequence(n, heads=2), BlockTopK(b, draw(st.integers(1, blocks)), causal)


@settings(max_examples=300, deadline=None)
@given(topk_case(), st.integers(0, 2**32 - 1))
def test_counts_equal_any_random_selection(case, seed):
    wl, p = case
    mask = p.mask(wl, np.random.default_rng(seed))
    assert p.pairs_per_head(wl) == int(mask.sum())
    b, blocks = p.block_size, p.blocks(wl)
    rows = p.tile_rows(wl, b, b)
    for c in range(blocks):
        tiles = [mask[c * b:(c + 1) * b, j * b:(j + 1) * b] for j in range(blocks)]
        nonempty = [t.any() for t in tiles]
        full = [t.all() for t in tiles]
        assert rows[c, 1] == sum(nonempty) and rows[c, 2] == sum(full) and rows[c, 0] == blocks
    t = count(wl, p, Tiling((b,), (b,))).tiles
    assert t.visited == int(rows[:, 1].sum()) and t.partial == int((rows[:, 1] - rows[:, 2]).sum())


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 12), st.booleans(), st.integers(1, 3), st.integers(1, 12))
def test_closed_form_equals_exact_count(b, blocks, causal, kv_heads, k):
    wl = Workload.sequence(b * blocks, heads=2 * kv_heads, kv_heads=kv_heads, head_dim=16, v_head_dim=8)
    p = BlockTopK(b, min(k, blocks), causal)
    assert_closed_form_equals_count(wl, p, "fwd")


def test_by_hand_and_in_predict():
    # 8 blocks of 128, causal, top-4: block c attends min(3, c) history blocks + its triangle:
    # history 0+1+2+3*5 = 18 blocks of 128x128, triangles 8 x 128*129/2
    wl = Workload.sequence(1024, heads=4)
    p = BlockTopK(128, 4, causal=True)
    assert p.pairs_per_head(wl) == 18 * 128 * 128 + 8 * 128 * 129 // 2
    r = predict(wl, p, "H100-SXM")
    assert r.pattern.counts.tiles.visited == 18 + 8 and r.pattern.counts.kernels == ("route", "attention")


@pytest.mark.parametrize("wl,p,msg", [
    (Workload.sequence(1000), BlockTopK(128, 2), "must divide"),
    (Workload.sequence(1024), BlockTopK(128, 9), "exceeds the 8 blocks"),
    (Workload.sequence(1024, phase="decode"), BlockTopK(128, 2, True), "prefill"),
    (Workload.sequence(1024), BlockTopK(0, 2), "must be positive"),
])
def test_bad_parameters_name_the_flag(wl, p, msg):
    with pytest.raises(PatternError, match=msg):
        count(wl, p)


def test_other_tiles_are_refused():
    with pytest.raises(PatternError, match="--q-tile 128 --kv-tile 128"):
        count(Workload.sequence(1024), BlockTopK(128, 2), Tiling((64,), (64,)))
