"""Tile counts equal a brute-force classification of the materialised, permuted mask."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload
from attnsim.errors import PatternError
from attnsim.patterns import Causal, Dense, Neighborhood, Sliding
from attnsim.tiles import Tiling, count_tiles

from .natten_reference import get_win_end, get_win_start, qkv_fix_dilation
from .strategies import unpadded_gna
from .test_gna import gna_case


def _groups(length, dilation, tile):
    """NATTEN token permutation of one axis: per dilation group, raw index or -1 (padding)."""
    padded = -(-length // (tile * dilation)) * tile
    return [[r + p * dilation if r + p * dilation < length else -1 for p in range(padded)]
            for r in range(min(dilation, length))]


def brute_force_tiles(wl, pattern, tiling):
    mask = pattern.mask(wl)
    lay = pattern.layout(wl)
    grid, kv_grid = lay.q_extents, lay.kv_extents
    dil = [getattr(r, "dilation", 1) for r in lay.rules]
    counts = dict(total=0, full=0, partial=0, empty=0, per_q_nonempty=[], drops=0)
    for group in itertools.product(*(range(min(d, g)) for d, g in zip(dil, grid))):
        q_axes = [_groups(g, d, t)[r] for g, d, t, r in zip(grid, dil, tiling.q_tile, group)]
        k_axes = [_groups(g, d, t)[r] for g, d, t, r in zip(kv_grid, dil, tiling.kv_tile, group)]
        q_tiles = [[ax[i:i + t] for i in range(0, len(ax), t)] for ax, t in zip(q_axes, tiling.q_tile)]
        k_tiles = [[ax[i:i + t] for i in range(0, len(ax), t)] for ax, t in zip(k_axes, tiling.kv_tile)]
        for qt in itertools.product(*q_tiles):
            q_pos = list(itertools.product(*qt))
            counts["per_q_nonempty"].append(0)
            for kt in itertools.product(*k_tiles):
                k_pos = list(itertools.product(*kt))
                q_flat = [np.ravel_multi_index(p, grid) for p in q_pos if -1 not in p]
                k_flat = [np.ravel_multi_index(p, kv_grid) for p in k_pos if -1 not in p]
                kept = int(mask[np.ix_(q_flat, k_flat)].sum()) if q_flat and k_flat else 0
                counts["drops"] += kept < len(q_flat) * len(k_flat)  # a real pair is masked out
                counts["total"] += 1
                if kept == 0:
                    counts["empty"] += 1
                elif kept == len(q_pos) * len(k_pos):
                    counts["full"] += 1
                else:
                    counts["partial"] += 1
                counts["per_q_nonempty"][-1] += kept > 0
    return counts


def expand(work, values):
    """The per-Q-tile values of a work histogram, as a sorted list (order is not kept)."""
    return sorted(np.repeat(values, work.count).tolist())


def natten_trip_count(wl, pattern, tiling):
    """NATTEN get_trip_count, transcribed: per Q tile, product over dims of the KV-tile range."""
    lay = pattern.layout(wl)
    dims = []
    for rule, length, tq, tk in zip(lay.rules, lay.q_extents, tiling.q_tile, tiling.kv_tile):
        d = rule.dilation
        per_dim = 0
        for r in range(min(d, length)):
            sub = qkv_fix_dilation(length, d, r)
            n_q = -(-length // (tq * d))
            for t in range(n_q):
                q0, q1 = t * tq, t * tq + tq - 1
                start = get_win_start(q0, sub, rule.window, rule.stride, rule.causal)
                last_start = get_win_start(q1, sub, rule.window, rule.stride, rule.causal)
                end = get_win_end(q1, last_start, rule.window, sub, rule.causal)
                per_dim += -(-end // tk) - start // tk
        dims.append(per_dim)
    return math.prod(dims)


@st.composite
def box_case(draw):
    wl, pattern = draw(gna_case(max_dim=7, max_tokens=150))
    q_tile = tuple(draw(st.integers(1, 5)) for _ in wl.grid)
    kv_tile = tuple(draw(st.integers(1, 5)) for _ in wl.grid)
    return wl, pattern, Tiling(q_tile, kv_tile, draw(st.sampled_from(["block-sparse", "range", "dense"])))


def assert_tiles_match_brute_force(wl, pattern, tiling):
    tc = count_tiles(wl, pattern, tiling)
    bf = brute_force_tiles(wl, pattern, tiling)
    assert (tc.total, tc.full, tc.partial, tc.empty) == (bf["total"], bf["full"], bf["partial"], bf["empty"])
    if tiling.policy == "range":
        assert tc.visited >= tc.full + tc.partial  # never skips a non-empty tile
    elif tiling.policy == "block-sparse":
        assert (tc.visited, tc.masked) == (bf["full"] + bf["partial"], bf["partial"])
        assert expand(tc.work, tc.work.visited) == sorted(bf["per_q_nonempty"])
    else:
        assert tc.visited == bf["total"]
        assert tc.masked == (tc.visited - tc.full if bf["drops"] == 0 else tc.visited)
    if tiling.policy == "range" and bf["drops"] == 0:  # only padding is masked
        assert tc.masked == tc.visited - tc.full
    w = tc.work
    assert (int(w.count.sum()), int((w.visited * w.count).sum()), int((w.masked * w.count).sum())) == (
        tc.q_tiles, tc.visited, tc.masked)
    return tc


@settings(max_examples=1000)
@given(box_case())
def test_box_tiles_match_brute_force(case):
    tc = assert_tiles_match_brute_force(*case)
    if tc.policy == "range":
        assert tc.visited == natten_trip_count(*case)


@st.composite
def flat_case(draw):
    q_len = draw(st.integers(1, 60))
    kv_len = draw(st.integers(1, 60)) if draw(st.booleans()) else q_len
    wl = Workload.sequence(q_len, kv_len=kv_len)
    window = draw(st.integers(1, kv_len))
    pattern = draw(st.sampled_from([Dense(), Causal(), Sliding(window), Sliding(window, causal=True)]))
    tiling = Tiling((draw(st.integers(1, 17)),), (draw(st.integers(1, 17)),),
                    draw(st.sampled_from(["block-sparse", "range", "dense"])))
    return wl, pattern, tiling


@settings(max_examples=1000)
@given(flat_case())
def test_1d_blocks_match_brute_force(case):
    assert_tiles_match_brute_force(*case)


def test_hunyuan_gna_is_perfectly_block_sparse_with_matching_tiles():
    # GNA paper / NATTEN profiler config: window 18x24x24, stride 16x8x8, tiles 2x8x8: every
    # visited tile is full, so NATTEN skips masking and the tile bound equals the FLOP bound.
    wl = Workload.on_grid((30, 48, 80), heads=24)
    t = Tiling((2, 8, 8), (2, 8, 8), "range")
    gna = count_tiles(wl, Neighborhood((18, 24, 24), stride=(16, 8, 8)), t)
    dense = count_tiles(wl, Dense(), t)
    assert gna.partial == 0 and gna.masked == 0 and gna.visited == gna.full
    assert dense.visited / gna.visited == pytest.approx(100 / 9)


def test_range_policy_on_flat_blocks_of_a_grid_is_refused_with_the_fix():
    with pytest.raises(PatternError, match="policy range needs box tiles"):
        count_tiles(Workload.on_grid((8, 8, 8)), Neighborhood(3), Tiling((128,), (128,), "range"))


@settings(max_examples=300)
@given(unpadded_gna(head_dim=16))
def test_tile_bound_never_exceeds_flop_bound_without_padding(case):
    # Exception by construction: with padding, dense's tiles carry padding slots that no kept
    # pair fills, so the tile bound can exceed the FLOP bound. Without padding it cannot.
    from attnsim import count

    wl, pattern, tiling = case
    p, d = count(wl, pattern, tiling), count(wl, Dense(), tiling)
    tile_bound = d.tiles.visited / p.tiles.visited
    flop_bound = d.pairs_per_head / p.pairs_per_head
    assert tile_bound <= flop_bound * (1 + 1e-12)
    assert p.flops.executed >= p.flops.matmul
