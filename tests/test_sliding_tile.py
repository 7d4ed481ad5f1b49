"""Sliding tile attention: equal to its own definition (tile-level windows), and only full or
empty tiles with the STA tile."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import SlidingTile


def sta_mask(grid, tile, window_tiles):
    """STA as its paper states it: a query tile attends the window of tiles centred on it."""
    coords = np.array(np.unravel_index(np.arange(int(np.prod(grid))), grid)).T
    keep = np.ones((len(coords), len(coords)), dtype=bool)
    for d, (length, t, w) in enumerate(zip(grid, tile, window_tiles)):
        tiles = length // t
        q_tile = coords[:, d] // t
        start = np.clip(q_tile - (w - 1) // 2, 0, tiles - w)
        k_tile = coords[:, d] // t
        keep &= (k_tile[None, :] >= start[:, None]) & (k_tile[None, :] < start[:, None] + w)
    return keep


@st.composite
def sta_case(draw):
    rank = draw(st.integers(1, 3))
    tile = tuple(draw(st.integers(1, 4 if rank < 3 else 2)) for _ in range(rank))
    tiles = tuple(draw(st.integers(1, 5 if rank < 3 else 3)) for _ in range(rank))
    window = tuple(draw(st.sampled_from([w for w in (1, 3, 5) if w <= n])) for n in tiles)
    grid = tuple(t * n for t, n in zip(tile, tiles))
    return Workload.on_grid(grid, head_dim=16), tile, window


@settings(max_examples=300)
@given(sta_case())
def test_sliding_tile_is_tile_aligned_gna(case):
    wl, tile, window = case
    p = SlidingTile.of(tile, window)
    assert np.array_equal(p.mask(wl), sta_mask(wl.grid, tile, window))
    c = count(wl, p, p.preferred_tiling())
    assert c.tiles.partial == 0 and c.tiles.masked == 0


def test_bad_sliding_tile_parameters():
    with pytest.raises(PatternError, match="not a multiple of tile"):
        count(Workload.on_grid((30, 48, 80)), SlidingTile.of((4, 8, 8), (3, 3, 3)))
    with pytest.raises(PatternError, match="must be odd"):
        count(Workload.on_grid((30, 48, 80)), SlidingTile.of((6, 8, 8), (2, 3, 3)))
