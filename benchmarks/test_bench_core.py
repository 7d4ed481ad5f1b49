"""Speed of the core (run: python -m pytest benchmarks --benchmark-only).

Targets are checked here, never as wall-clock asserts in tests/: see docs/performance.md.
"""
from attnsim import Workload, count, predict
from attnsim.hwmodels import load_profile
from attnsim.patterns import Neighborhood

HW = load_profile("H100-SXM")


def test_count_hunyuan_neighborhood(benchmark):
    wl = Workload.on_grid((30, 48, 80), heads=24, head_dim=128)
    benchmark(count, wl, Neighborhood(window=(18, 24, 24)))


def test_predict_hunyuan_neighborhood(benchmark):
    """Repeated: the second and later calls find the tile histograms, the CTA schedule and the
    per-tile costs memoised (what a sweep or an `attnsim model` run meets)."""
    wl = Workload.on_grid((30, 48, 80), heads=24, head_dim=128)
    benchmark(predict, wl, Neighborhood(window=(18, 24, 24)), HW)


def _forget_memos():
    from attnsim import tiles
    from attnsim.hwmodels import profile, scheduling

    for memo in (tiles._PREFIX, tiles._UNIQUE, tiles._SUMMARIES, scheduling._MAKESPANS, profile._DERIVED):
        memo.clear()
    tiles.axis_rows.cache_clear()


def test_predict_hunyuan_neighborhood_first_time(benchmark):
    """A problem met for the first time: every memo emptied before each call."""
    wl = Workload.on_grid((30, 48, 80), heads=24, head_dim=128)
    benchmark.pedantic(predict, (wl, Neighborhood(window=(18, 24, 24)), HW), setup=_forget_memos, rounds=50)


def test_count_does_not_grow_with_n_squared(benchmark):
    # 1M-token causal sliding window: O(1) closed forms, same cost as a 1k-token problem.
    from attnsim.patterns import Sliding

    wl = Workload.sequence(1 << 20, heads=32, head_dim=128)
    benchmark(count, wl, Sliding(4096, causal=True))
