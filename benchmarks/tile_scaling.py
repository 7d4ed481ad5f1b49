"""Exact tile counting cost versus problem size (prints ratios; no asserts).

    python benchmarks/tile_scaling.py

Counts GNA tiles for a ~1k-token and a 115k-token (HunyuanVideo 30x48x80) 3D problem with the
same window/stride/tile; a mask-based method would grow ~13,000x (N^2), ours grows with tiles
per dimension.
"""
from timing import best_ms

from attnsim import Workload, count
from attnsim.patterns import Neighborhood
from attnsim.tiles import Tiling

TILING = Tiling((2, 8, 8), (2, 8, 8), "range")


def main() -> None:
    small = Workload.on_grid((4, 16, 16), heads=24)      # 1,024 tokens
    large = Workload.on_grid((30, 48, 80), heads=24)     # 115,200 tokens
    cases = {"small": (small, Neighborhood((3, 8, 8), dilation=(1, 1, 2), stride=(2, 4, 4))),
             "large": (large, Neighborhood((18, 24, 24), dilation=(1, 1, 2), stride=(16, 8, 8)))}
    times = {k: best_ms(lambda wl=wl, p=p: count(wl, p, TILING)) for k, (wl, p) in cases.items()}
    n_ratio = (large.q_len / small.q_len) ** 2
    print(f"count+tiles, 1,024 tokens  : {times['small']:.2f} ms")
    print(f"count+tiles, 115,200 tokens: {times['large']:.2f} ms (target < 50 ms)")
    print(f"time ratio {times['large'] / times['small']:.1f}x vs N^2 ratio {n_ratio:,.0f}x")


if __name__ == "__main__":
    main()
