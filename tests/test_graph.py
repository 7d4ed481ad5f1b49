"""Graph attention: counts and 1D block tiles from the edge list equal brute force on the mask."""
import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.cli import main
from attnsim.errors import PatternError
from attnsim.patterns import Graph
from attnsim.tiles import Tiling, count_tiles



def brute_force_blocks(mask, tq, tk):
    """Kept pairs per (Q block, KV block) and each block's real size, from the mask."""
    nq, nk = -(-mask.shape[0] // tq), -(-mask.shape[1] // tk)
    kept = np.zeros((nq, nk), dtype=np.int64)
    real = np.zeros((nq, nk), dtype=np.int64)
    for a in range(nq):
        for b in range(nk):
            block = mask[a * tq:(a + 1) * tq, b * tk:(b + 1) * tk]
            kept[a, b], real[a, b] = block.sum(), block.size
    return kept, real


@st.composite
def graph_case(draw):
    n = draw(st.integers(1, 40))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=300))
    tiling = Tiling((draw(st.integers(1, 9)),), (draw(st.integers(1, 9)),),
                    draw(st.sampled_from(["block-sparse", "range", "dense"])))
    return Workload.sequence(n, heads=2), Graph(np.array(edges)), tiling


@settings(max_examples=500)
@given(graph_case())
def test_graph_counts_and_tiles_equal_brute_force(case):
    wl, g, tiling = case
    mask = g.mask(wl)
    c = count(wl, g)
    assert c.pairs_per_head == int(mask.sum()) and c.touched_keys == int(mask.any(axis=0).sum())
    assert_blocks_match_brute_force(wl, g, tiling)


def assert_blocks_match_brute_force(wl, pattern, tiling):
    """1D block tiles of a pattern that counts its own blocks, against its materialised mask."""
    tq, tk = tiling.q_tile[0], tiling.kv_tile[0]
    kept, real = brute_force_blocks(pattern.mask(wl), tq, tk)
    full, nonempty = int((kept == tq * tk).sum()), int((kept > 0).sum())
    t = count_tiles(wl, pattern, tiling)
    assert (t.total, t.full, t.partial, t.empty) == (kept.size, full, nonempty - full, kept.size - nonempty)
    rows = [np.flatnonzero(r) for r in kept > 0]
    visited = {"block-sparse": nonempty, "dense": kept.size,
               "range": sum(r.max() - r.min() + 1 for r in rows if len(r))}[tiling.policy]
    assert t.visited == visited
    if tiling.policy == "block-sparse":
        assert t.masked == nonempty - full
    elif (kept == real).all():  # nothing real dropped anywhere: only padding is masked
        assert t.masked == t.visited - t.full


def test_networkx_graph_and_edge_file_agree(tmp_path, capsys):
    grid = nx.grid_2d_graph(8, 8)
    grid = nx.convert_node_labels_to_integers(grid)
    g = Graph.from_networkx(grid)
    assert len(g.edges) == 2 * grid.number_of_edges() + 64
    path = tmp_path / "edges.txt"
    np.savetxt(path, g.edges, fmt="%d")
    assert np.array_equal(Graph.from_file(str(path)).edges, g.edges)
    assert main(["predict", "--pattern", "graph", "--edges", str(path), "--seq", "64", "--q-tile", "16",
                 "--kv-tile", "16", "--json"]) == 0
    assert '"pairs_per_head": 288' in capsys.readouterr().out


def test_bad_edges_name_the_fix(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("0 1\n2 99\n")
    with pytest.raises(PatternError, match="--seq to the node count"):
        count(Workload.sequence(10), Graph.from_file(str(path)))
    path.write_text("0 1 2\n")
    with pytest.raises(PatternError, match="two integers"):
        Graph.from_file(str(path))
    with pytest.raises(PatternError, match="cannot read"):
        Graph.from_file(str(tmp_path / "missing.txt"))
    with pytest.raises(PatternError, match="1D blocks"):
        count_tiles(Workload.sequence(10), Graph(np.array([[0, 1]])), Tiling((2, 2), (2, 2)))
