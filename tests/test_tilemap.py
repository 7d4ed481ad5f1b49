"""Tile maps: cell totals equal count_tiles, cells equal a brute-force classification of the mask."""
import importlib.util
import itertools
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload
from attnsim.errors import AttnsimError, PatternError
from attnsim.patterns import Causal, Dense, Neighborhood, Sliding
from attnsim.tilemap import EMPTY, FULL, NO_PAIR, PARTIAL, draw_tile_map, tile_map
from attnsim.tiles import Tiling, count_tiles

from .natten_reference import get_win_end, get_win_start, qkv_fix_dilation
from .test_gna import gna_case
from .test_tiles import _groups, box_case, flat_case

HAS_FLAT_TILES = importlib.util.find_spec("attnsim.flat_tiles") is not None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _natten_range(rule, length, group, tile, q0, kv_tile):
    """KV tiles NATTEN's get_trip_count visits for the Q tile starting at ``q0`` (one dim)."""
    sub = qkv_fix_dilation(length, rule.dilation, group)
    args = (rule.window, rule.stride, rule.causal)
    start = get_win_start(q0, sub, *args)
    last = q0 + tile - 1
    end = get_win_end(last, get_win_start(last, sub, *args), rule.window, sub, rule.causal)
    return range(start // kv_tile, -(-end // kv_tile))


def brute_force_map(wl, pattern, tiling):
    """(classes, range-visited or None) from the materialised mask, in TileMap's order."""
    mask = pattern.mask(wl)
    lay = pattern.layout(wl)
    grid, kv_grid, rules = lay.q_extents, lay.kv_extents, lay.rules
    if len(tiling.q_tile) == 1 and len(rules) > 1:  # 1D blocks of the flattened sequence
        grid, kv_grid, rules = (wl.q_len,), (wl.kv_len,), (None,)
    dil = [getattr(r, "dilation", 1) for r in rules]
    natten = all(isinstance(getattr(r, "dilation", None), int) for r in rules)

    def tiles(extents, tile):
        out = []  # (group, tile index per dim, positions with -1 for padding)
        per_dim = [_groups(e, d, t) for e, d, t in zip(extents, dil, tile)]
        for group in itertools.product(*(range(len(p)) for p in per_dim)):
            axes = [p[r] for p, r in zip(per_dim, group)]
            chunks = [[ax[i:i + t] for i in range(0, len(ax), t)] for ax, t in zip(axes, tile)]
            for idx in itertools.product(*(range(len(c)) for c in chunks)):
                out.append((group, idx, list(itertools.product(*(c[i] for c, i in zip(chunks, idx))))))
        return out

    q_tiles, kv_tiles = tiles(grid, tiling.q_tile), tiles(kv_grid, tiling.kv_tile)
    classes = np.full((len(q_tiles), len(kv_tiles)), NO_PAIR, dtype=np.int8)
    ranged = np.zeros(classes.shape, dtype=bool) if natten else None
    for a, (gq, tq_idx, q_pos) in enumerate(q_tiles):
        q_flat = [np.ravel_multi_index(p, grid) for p in q_pos if -1 not in p]
        for b, (gk, tk_idx, k_pos) in enumerate(kv_tiles):
            if gq != gk:
                continue
            k_flat = [np.ravel_multi_index(p, kv_grid) for p in k_pos if -1 not in p]
            kept = int(mask[np.ix_(q_flat, k_flat)].sum()) if q_flat and k_flat else 0
            classes[a, b] = EMPTY if kept == 0 else FULL if kept == len(q_pos) * len(k_pos) else PARTIAL
            if natten:
                ranged[a, b] = all(
                    k in _natten_range(r, n, g, t, i * t, tk)
                    for r, n, g, t, tk, i, k in zip(rules, grid, gq, tiling.q_tile, tiling.kv_tile, tq_idx, tk_idx))
    return classes, ranged


def assert_map_matches_brute_force(wl, pattern, tiling):
    tmap = tile_map(wl, pattern, tiling)
    classes, ranged = brute_force_map(wl, pattern, tiling)
    assert tmap.classes.dtype == np.int8
    np.testing.assert_array_equal(tmap.classes, classes)
    if tiling.policy == "block-sparse":
        np.testing.assert_array_equal(tmap.visited, classes > EMPTY)
    elif tiling.policy == "dense":
        np.testing.assert_array_equal(tmap.visited, classes >= EMPTY)
    elif ranged is not None:
        np.testing.assert_array_equal(tmap.visited, ranged)
    else:  # 1D band rules: the range covers every non-empty tile, contiguously, in its group
        assert tmap.visited[classes > EMPTY].all() and not tmap.visited[classes == NO_PAIR].any()
        for row in tmap.visited:
            cols = np.flatnonzero(row)
            assert len(cols) == 0 or cols[-1] - cols[0] + 1 == len(cols)
    return tmap


def assert_totals_match_count_tiles(wl, pattern, tiling):
    tmap = tile_map(wl, pattern, tiling)
    tc = count_tiles(wl, pattern, tiling)
    assert tmap.counts() == {k: getattr(tc, k) for k in ("total", "full", "partial", "empty", "visited")}
    assert tmap.classes.shape == (math.prod(tmap.q_shape), math.prod(tmap.kv_shape))
    assert math.prod(tmap.q_shape) == tc.q_tiles


@settings(max_examples=300)
@given(box_case())
def test_box_map_totals_equal_count_tiles(case):
    assert_totals_match_count_tiles(*case)


@settings(max_examples=300)
@given(flat_case())
def test_1d_map_totals_equal_count_tiles(case):
    assert_totals_match_count_tiles(*case)


@settings(max_examples=200)
@given(box_case())
def test_box_map_cells_match_brute_force(case):
    assert_map_matches_brute_force(*case)


@settings(max_examples=200)
@given(flat_case())
def test_1d_map_cells_match_brute_force(case):
    assert_map_matches_brute_force(*case)


@st.composite
def flat_on_grid_case(draw):
    wl, pattern = draw(gna_case(max_dim=6, max_tokens=120).filter(lambda c: len(c[0].grid) > 1))
    pattern = draw(st.sampled_from([pattern, Dense()]))
    blocks = (draw(st.integers(1, 20)),), (draw(st.integers(1, 20)),)
    return wl, pattern, Tiling(*blocks, draw(st.sampled_from(["block-sparse", "dense"])))


@pytest.mark.skipif(not HAS_FLAT_TILES, reason="attnsim.flat_tiles is not available")
@settings(max_examples=200)
@given(flat_on_grid_case())
def test_1d_blocks_on_a_grid_match_brute_force_and_count_tiles(case):
    assert_map_matches_brute_force(*case)
    assert_totals_match_count_tiles(*case)


@pytest.mark.skipif(not HAS_FLAT_TILES, reason="attnsim.flat_tiles is not available")
def test_range_policy_on_1d_blocks_of_a_grid_is_refused():
    with pytest.raises(PatternError, match="range policy needs box tiles on a multi-D grid"):
        tile_map(Workload.on_grid((8, 8)), Neighborhood(3), Tiling((16,), (16,), "range"))


def test_1d_blocks_on_a_grid_without_flat_tiles_name_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "attnsim.flat_tiles", None)  # import fails
    with pytest.raises(PatternError, match="give box tiles of rank 2"):
        tile_map(Workload.on_grid((8, 8)), Neighborhood(3), Tiling((16,), (16,)))


def test_dense_1d_blocks_on_a_grid_are_one_flat_dimension():
    tmap = tile_map(Workload.on_grid((6, 10)), Dense(), Tiling((16,), (8,)))
    assert tmap.classes.shape == (4, 8) and tmap.q_shape == (1, 4)
    assert tmap.counts()["full"] == 3 * 7  # padding-free tiles only


def test_rows_unravel_to_group_then_row_major_tile():
    # 2D, dilation 2 in dim 0: groups (0,), (1,); tiles per group 2 x 3.
    wl, pattern = Workload.on_grid((8, 12)), Neighborhood((3, 5), dilation=(2, 1))
    tmap = tile_map(wl, pattern, Tiling((2, 4), (2, 4), "range"))
    assert tmap.q_shape == (2, 1, 2, 3) and tmap.classes.shape == (12, 12)
    group = np.array([np.unravel_index(r, tmap.q_shape)[:2] for r in range(12)])
    same = (group[:, None, :] == group[None, :, :]).all(axis=2)
    assert ((tmap.classes == NO_PAIR) == ~same).all() and not tmap.visited[~same].any()


def test_hunyuan_gna_map_has_no_partial_tiles():
    wl = Workload.on_grid((30, 48, 80))
    tmap = tile_map(wl, Neighborhood((18, 24, 24), stride=(16, 8, 8)), Tiling((2, 8, 8), (2, 8, 8), "range"))
    assert tmap.classes.shape == (900, 900) and not (tmap.classes == PARTIAL).any()
    assert (tmap.visited == (tmap.classes == FULL)).all()


def test_too_large_map_is_refused_in_one_line():
    with pytest.raises(PatternError, match="too large.*bigger --q-tile") as err:
        tile_map(Workload.sequence(1 << 20), Causal(), Tiling((128,), (128,)))
    assert "\n" not in str(err.value)


def test_rank_mismatch_is_refused():
    with pytest.raises(PatternError, match="rank 2 but the pattern has 3 dims"):
        tile_map(Workload.on_grid((8, 8, 8)), Neighborhood(3), Tiling((4, 4), (4, 4)))


@pytest.mark.parametrize("wl,pattern,tiling", [
    (Workload.sequence(1000), Sliding(100, causal=True), Tiling((64,), (32,), "range")),
    (Workload.on_grid((20, 30)), Neighborhood((5, 7), dilation=(2, 3)), Tiling((4, 4), (4, 4), "range")),
    (Workload.on_grid((9, 16, 16)), Neighborhood((3, 5, 5), causal=(True, False, False)),
     Tiling((2, 4, 4), (2, 4, 4), "dense")),
])
def test_draw_writes_a_png(tmp_path, wl, pattern, tiling):
    out = draw_tile_map(tile_map(wl, pattern, tiling), tmp_path / "map.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]


def test_draw_to_a_missing_directory_writes_nothing(tmp_path):
    tmap = tile_map(Workload.sequence(256), Causal(), Tiling((32,), (32,)))
    with pytest.raises(AttnsimError, match="does not exist"):
        draw_tile_map(tmap, tmp_path / "nope" / "map.png")
    assert not list(tmp_path.iterdir())


def test_a_failing_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, fh, **kwargs):
        fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken)
    tmap = tile_map(Workload.sequence(256), Causal(), Tiling((32,), (32,)))
    with pytest.raises(AttnsimError, match="No space left"):
        draw_tile_map(tmap, tmp_path / "map.png")
    assert not list(tmp_path.iterdir())


def test_draw_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    for name in ("matplotlib.colors", "matplotlib.figure", "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)
    tmap = tile_map(Workload.sequence(256), Causal(), Tiling((32,), (32,)))
    with pytest.raises(AttnsimError, match="pip install matplotlib"):
        draw_tile_map(tmap, tmp_path / "map.png")
