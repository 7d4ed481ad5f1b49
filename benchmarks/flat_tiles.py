"""FlexAttention BlockMask tile counts of grid patterns, exact and mask-free (prints times).

    python benchmarks/flat_tiles.py

1D blocks of the row-major flattened sequence on FLUX (256x256) and HunyuanVideo (30x48x80)
neighborhood attention; a materialised mask would hold 4.3e9 and 1.3e10 booleans.
"""
from timing import best_ms

from attnsim import Workload
from attnsim.flat_tiles import flat_block_classes, flat_block_counts
from attnsim.patterns import Neighborhood

CASES = {
    "FLUX 256x256, window 80x80": (Workload.on_grid((256, 256), heads=24), Neighborhood((80, 80))),
    "HunyuanVideo 30x48x80, window 18x24x24": (Workload.on_grid((30, 48, 80), heads=24),
                                               Neighborhood((18, 24, 24))),
}
BLOCK = 128  # FlexAttention create_block_mask default


def main() -> None:
    for name, (wl, pattern) in CASES.items():
        lay = pattern.layout(wl)
        args = (lay.rules, lay.q_extents, lay.kv_extents, BLOCK, BLOCK)
        res = flat_block_counts(*args)
        total = len(res.nonempty) * res.kv_blocks
        nonempty, full = int(res.nonempty.sum()), int(res.full.sum())
        print(f"{name}, blocks {BLOCK}/{BLOCK}: {nonempty:,} non-empty ({full:,} full) of {total:,} "
              f"= {nonempty / total:.1%}; counts {best_ms(lambda: flat_block_counts(*args), 5):.0f} ms, "
              f"classes {best_ms(lambda: flat_block_classes(*args), 5):.0f} ms")


if __name__ == "__main__":
    main()
