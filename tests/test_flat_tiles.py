"""1D FlexAttention blocks of a flattened grid pattern equal a brute-force cut of the full mask."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload
from attnsim.errors import PatternError
from attnsim.flat_tiles import flat_block_classes, flat_block_counts, flat_boxes
from attnsim.patterns import Causal, Dense, Neighborhood, Sliding
from attnsim.patterns.axes import AxisGroup, BandAxis, DenseAxis, NeighborhoodAxis
from attnsim.tiles import Tiling, count_tiles

from .test_gna import gna_case


def brute_force_classes(mask, tq, tk):
    """Pad the (N_q, N_kv) mask with False to block multiples and classify every block pair."""
    nq, nk = mask.shape
    q_blocks, kv_blocks = -(-nq // tq), -(-nk // tk)
    padded = np.zeros((q_blocks * tq, kv_blocks * tk), dtype=bool)
    padded[:nq, :nk] = mask
    kept = padded.reshape(q_blocks, tq, kv_blocks, tk).sum(axis=(1, 3))
    return np.where(kept == tq * tk, 2, np.where(kept > 0, 1, 0)).astype(np.int8)


def rules_mask(rules, q_extents, kv_extents):
    """Pattern.mask for an arbitrary rule product (rules mixed across dims)."""
    q = np.unravel_index(np.arange(math.prod(q_extents)), q_extents)
    k = np.unravel_index(np.arange(math.prod(kv_extents)), kv_extents)
    out = np.ones((len(q[0]), len(k[0])), dtype=bool)
    for rule, qc, kc, lq, lkv in zip(rules, q, k, q_extents, kv_extents):
        out &= rule.keep(qc[:, None], kc[None, :], lq, lkv)
    return out


def assert_matches(rules, q_extents, kv_extents, mask, tq, tk):
    expected = brute_force_classes(mask, tq, tk)
    classes = flat_block_classes(rules, q_extents, kv_extents, tq, tk)
    assert np.array_equal(classes, expected)
    counts = flat_block_counts(rules, q_extents, kv_extents, tq, tk)
    assert counts.kv_blocks == expected.shape[1]
    assert np.array_equal(counts.nonempty, (expected > 0).sum(axis=1))
    assert np.array_equal(counts.full, (expected == 2).sum(axis=1))
    assert counts.nonempty.dtype == counts.full.dtype == np.int64


@st.composite
def flat_case(draw):
    if draw(st.integers(0, 4)) == 0:  # dense on a random 1-3D grid
        grid = tuple(draw(st.integers(1, 7)) for _ in range(draw(st.integers(1, 3))))
        wl, pattern = Workload.on_grid(grid), Dense()
    else:
        wl, pattern = draw(gna_case(max_dim=7, max_tokens=150))
    return wl, pattern, draw(st.integers(1, 17)), draw(st.integers(1, 17))


@settings(max_examples=1000)
@given(flat_case())
def test_flat_blocks_match_brute_force(case):
    wl, pattern, tq, tk = case
    lay = pattern.layout(wl)
    assert_matches(lay.rules, lay.q_extents, lay.kv_extents, pattern.mask(wl), tq, tk)


@st.composite
def mixed_rule_case(draw):
    """Band/Dense dims with q extent != kv extent (empty windows) next to neighborhood dims."""
    rules, q_ext, kv_ext = [], [], []
    for _ in range(draw(st.integers(1, 3))):
        lq = draw(st.integers(1, 6))
        kind = draw(st.sampled_from(["dense", "band", "na"]))
        if kind == "na":
            d = draw(st.integers(1, lq))
            k = draw(st.integers(1, lq // d))
            rule, lkv = NeighborhoodAxis(k, d, draw(st.integers(1, k)), draw(st.booleans())), lq
        else:
            lkv = draw(st.integers(1, 6))
            side = st.none() | st.integers(0, 3)
            rule = DenseAxis() if kind == "dense" else BandAxis(draw(side), draw(side))
        rules.append(rule), q_ext.append(lq), kv_ext.append(lkv)
    return tuple(rules), tuple(q_ext), tuple(kv_ext), draw(st.integers(1, 17)), draw(st.integers(1, 17))


@settings(max_examples=500)
@given(mixed_rule_case())
def test_mixed_rules_and_cross_extents_match_brute_force(case):
    rules, q_ext, kv_ext, tq, tk = case
    assert_matches(rules, q_ext, kv_ext, rules_mask(rules, q_ext, kv_ext), tq, tk)


class GappyAxis:
    """Query i keeps keys [a*i, a*i + w): monotone windows that leave gaps when a > w."""

    def __init__(self, a, w):
        self.a, self.w = a, w

    def groups(self, lq, lkv):
        return [AxisGroup(0, 1, lq, lkv)]

    def bounds(self, i, g):
        return np.minimum(self.a * i, g.kv_len), np.minimum(self.a * i + self.w, g.kv_len)

    def keep(self, q, k, lq, lkv):
        return (k >= self.a * q) & (k < self.a * q + self.w) & (k < lkv)


@settings(max_examples=200)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 6), st.integers(1, 17), st.integers(1, 17))
def test_windows_with_gaps_are_counted_exactly(a, w, lq, tq, tk):
    rules, q_ext, kv_ext = (GappyAxis(a, w), NeighborhoodAxis(2, 2)), (lq, 5), (a * lq + 1, 5)
    assert_matches(rules, q_ext, kv_ext, rules_mask(rules, q_ext, kv_ext), tq, tk)


def test_larger_2d_case_matches_brute_force():
    wl = Workload.on_grid((24, 24))
    pattern = Neighborhood((7, 9), dilation=(2, 1), stride=(3, 2))
    lay = pattern.layout(wl)
    expected = brute_force_classes(pattern.mask(wl), 16, 32)
    counts = flat_block_counts(lay.rules, lay.q_extents, lay.kv_extents, 16, 32)
    assert counts.nonempty.sum() == (expected > 0).sum()
    assert counts.full.sum() == (expected == 2).sum()
    assert np.array_equal(flat_block_classes(lay.rules, lay.q_extents, lay.kv_extents, 16, 32), expected)


def test_full_blocks_appear_when_windows_cover_whole_rows():
    # 3D window covering the last two dims whole: every 16-token block of a 8x8 plane is full.
    wl = Workload.on_grid((6, 8, 8))
    pattern = Neighborhood((3, 8, 8))
    lay = pattern.layout(wl)
    expected = brute_force_classes(pattern.mask(wl), 16, 16)
    assert (expected == 2).any()
    assert np.array_equal(flat_block_classes(lay.rules, lay.q_extents, lay.kv_extents, 16, 16), expected)


@pytest.mark.parametrize("wl,pattern", [
    (Workload.sequence(300), Causal()),
    (Workload.sequence(300, kv_len=421), Causal()),
    (Workload.sequence(421, kv_len=300), Sliding(37)),
    (Workload.sequence(500, kv_len=333), Dense()),
    (Workload.on_grid((500,)), Neighborhood(33, stride=5, causal=True)),
])
@pytest.mark.parametrize("tq,tk", [(16, 16), (64, 32), (7, 13)])
def test_rank1_equals_tiles_1d_path(wl, pattern, tq, tk):
    lay = pattern.layout(wl)
    counts = flat_block_counts(lay.rules, lay.q_extents, lay.kv_extents, tq, tk)
    tiles = count_tiles(wl, pattern, Tiling((tq,), (tk,), "block-sparse"))
    assert counts.nonempty.sum() == tiles.full + tiles.partial
    assert counts.full.sum() == tiles.full
    assert len(counts.nonempty) * counts.kv_blocks == tiles.total


@settings(max_examples=300)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.data())
def test_flat_boxes_partition_the_interval(extents, data):
    n = math.prod(extents)
    a = data.draw(st.integers(0, n))
    e = data.draw(st.integers(a, n))
    boxes = flat_boxes(a, e, tuple(extents))
    assert len(boxes) <= max(0, 2 * len(extents) - 1)
    cells = []
    for box in boxes:
        for corner in np.ndindex(*(hi - lo for lo, hi in box)):
            point = tuple(lo + x for (lo, _), x in zip(box, corner))
            cells.append(int(np.ravel_multi_index(point, extents)))
    assert sorted(cells) == list(range(a, e))


@pytest.mark.parametrize("args,match", [
    (((DenseAxis(),), (4, 4), (4, 4), 2, 2), "one rule per dimension"),
    (((DenseAxis(),), (4,), (4,), 0, 2), "must be positive"),
])
def test_bad_arguments_raise_pattern_error(args, match):
    with pytest.raises(PatternError, match=match):
        flat_block_counts(*args)
