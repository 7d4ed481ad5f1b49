"""PowerAttention: block-level counts equal brute force on the mask, and the block selection is
FlexAttention's (d & (d - 1)) == 0 plus window and sink blocks."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import Power
from attnsim.tiles import Tiling

from .test_graph import assert_blocks_match_brute_force


@settings(max_examples=300)
@given(st.integers(1, 90), st.integers(1, 9), st.integers(1, 4), st.integers(0, 3))
def test_power_counts_and_tiles_equal_brute_force(n, bs, window, sinks):
    wl, p = Workload.sequence(n), Power(bs, window, sinks)
    mask = p.mask(wl)
    blocks = -(-n // bs)
    for qb in range(blocks):  # the paper's rule, written out
        expected = [kb for kb in range(qb + 1)
                    if ((qb - kb) & (qb - kb - 1)) == 0 or qb - kb < window or kb < sinks]
        assert list(p.selected(qb)) == expected
    assert count(wl, p).pairs_per_head == int(mask.sum())
    for policy in ("block-sparse", "range", "dense"):
        assert_blocks_match_brute_force(wl, p, Tiling((bs,), (bs,), policy))


def test_power_needs_its_block_tiles():
    with pytest.raises(PatternError, match="block granularity"):
        count(Workload.sequence(1024), Power(256), Tiling((128,), (128,)))
