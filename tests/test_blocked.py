"""Swin (shifted) windows and HaloNet blocks: counts and tiles equal brute force on the mask."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import Halo, Swin
from attnsim.tiles import Tiling, count_tiles

from .test_tiles import assert_tiles_match_brute_force


def swin_reference(grid, window, shift):
    """Swin as implemented: roll the grid by -shift, cut windows, mask tokens whose pre-roll
    regions differ (the wrapped parts), i.e. compare region ids per dimension."""
    coords = np.array(np.unravel_index(np.arange(int(np.prod(grid))), grid)).T
    keep = np.ones((len(coords),) * 2, dtype=bool)
    for d, (n, w, s) in enumerate(zip(grid, window, shift)):
        rolled = (coords[:, d] - s) % n            # position after torch.roll(x, -s)
        win = rolled // w
        # regions of the original axis: [0, s) wrapped to the end, the rest in place
        region = np.where(coords[:, d] < s, 1, 0) if s else np.zeros(len(coords), dtype=int)
        keep &= (win[:, None] == win[None, :]) & (region[:, None] == region[None, :])
    return keep


def _per_dim(values, rank):
    return tuple(values) * rank if len(values) == 1 else tuple(values)


class RolledSwin(Swin):
    """Swin seen in the rolled frame: its tile layout used as the mask (for brute force)."""

    def layout(self, wl):
        return self.tile_layout(wl)


@st.composite
def swin_case(draw):
    rank = draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    grid = tuple(w * draw(st.integers(1, 3 if rank == 3 else 4)) for w in window)
    shift = tuple(draw(st.integers(0, w - 1)) for w in window)
    return Workload.on_grid(grid, head_dim=16), Swin(window, shift)


@settings(max_examples=300)
@given(swin_case(), st.data())
def test_swin_matches_roll_and_mask(case, data):
    wl, p = case
    mask = p.mask(wl)
    assert np.array_equal(mask, swin_reference(wl.grid, p.window, p.shift))
    assert count(wl, p).pairs_per_head == int(mask.sum())
    # tiles are counted on the rolled grid the kernel sees: the same pattern with the roll undone
    rolled = RolledSwin(p.window, p.shift)
    coords = np.array(np.unravel_index(np.arange(wl.q_len), wl.grid)).T
    order = np.ravel_multi_index(tuple(((coords[:, d] + s) % n) for d, (n, s) in
                                       enumerate(zip(wl.grid, _per_dim(p.shift, len(wl.grid))))), wl.grid)
    assert np.array_equal(rolled.mask(wl), mask[np.ix_(order, order)])
    tile = tuple(data.draw(st.integers(1, 4)) for _ in wl.grid)
    tiling = Tiling(tile, tile, data.draw(st.sampled_from(["block-sparse", "range"])))
    assert count_tiles(wl, p, tiling) == assert_tiles_match_brute_force(wl, rolled, tiling)


@st.composite
def halo_case(draw):
    rank = draw(st.integers(1, 3))
    grid = tuple(draw(st.integers(1, 9 if rank < 3 else 5)) for _ in range(rank))
    block = tuple(draw(st.integers(1, n)) for n in grid)
    halo = tuple(draw(st.integers(0, 3)) for _ in grid)
    return Workload.on_grid(grid, head_dim=16), Halo(block, halo)


@settings(max_examples=300)
@given(halo_case(), st.data())
def test_halo_matches_its_definition(case, data):
    wl, p = case
    coords = np.array(np.unravel_index(np.arange(wl.q_len), wl.grid)).T
    ref = np.ones((wl.q_len, wl.q_len), dtype=bool)
    for d, (b, h) in enumerate(zip(p.block, p.halo)):
        lo = coords[:, d] // b * b
        ref &= (coords[None, :, d] >= lo[:, None] - h) & (coords[None, :, d] < lo[:, None] + b + h)
    assert np.array_equal(p.mask(wl), ref)
    assert count(wl, p).pairs_per_head == int(ref.sum())
    tile = tuple(data.draw(st.integers(1, 4)) for _ in wl.grid)
    assert_tiles_match_brute_force(wl, p, Tiling(tile, tile, "block-sparse"))


def test_bad_window_parameters():
    with pytest.raises(PatternError, match="multiple of window"):
        count(Workload.on_grid((10, 10)), Swin((7, 7)))
    with pytest.raises(PatternError, match="shift"):
        count(Workload.on_grid((14, 14)), Swin((7, 7), (7, 0)))
