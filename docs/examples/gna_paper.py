"""Reproduce docs/gna.md: attnsim's bounds and uncalibrated tile-model times for the GNA paper's
problems, next to the numbers NATTEN publishes (docs/profiler.md and docs/assets/*-fna-perf.png
of github.com/SHI-Labs/NATTEN, NATTEN v0.20.0; 24 heads, head dim 128, fp16, batch 1, forward).

Run: python docs/examples/gna_paper.py [--json]
"""
import json
import sys

from attnsim import Workload, predict
from attnsim.patterns import Neighborhood
from attnsim.tiles import Tiling

# name, grid, window, stride, {arch: (profile, q_tile, kv_tile)}, published measured kernel ms
HOPPER, BLACKWELL = "H100-SXM", "B200"
CASES = [
    ("FLUX 4K NA", (256, 256), (80, 80), (1, 1), {HOPPER: ((16, 8), (16, 8), 16.201), BLACKWELL: ((16, 16), (16, 8), 8.692)}),
    ("FLUX 4K GNA", (256, 256), (80, 80), (16, 16), {HOPPER: ((16, 8), (16, 8), 7.914), BLACKWELL: ((16, 16), (16, 8), 4.114)}),
    ("FLUX 4K NA, 1D tiles", (256, 256), (80, 80), (1, 1), {HOPPER: ((128,), (128,), None)}),
    ("HunyuanVideo NA", (30, 48, 80), (18, 24, 24), (1, 1, 1), {HOPPER: ((2, 8, 8), (2, 8, 8), 79.043), BLACKWELL: ((4, 8, 8), (2, 8, 8), 42.243)}),
    ("HunyuanVideo GNA", (30, 48, 80), (18, 24, 24), (16, 8, 8), {HOPPER: ((2, 8, 8), (2, 8, 8), 23.359), BLACKWELL: ((4, 8, 8), (2, 8, 8), 13.010)}),
    ("HunyuanVideo NA, 1D tiles", (30, 48, 80), (18, 24, 24), (1, 1, 1), {HOPPER: ((128,), (128,), None)}),
    ("Cosmos NA, window 16x24x16 (inferred)", (16, 44, 80), (16, 24, 16), (1, 1, 1), {BLACKWELL: ((8, 4, 8), (4, 4, 8), None), HOPPER: ((4, 4, 8), (4, 4, 8), None)}),
    ("Cosmos NA, window 16x8x48 (inferred)", (16, 44, 80), (16, 8, 48), (1, 1, 1), {BLACKWELL: ((8, 4, 8), (4, 4, 8), None), HOPPER: ((4, 4, 8), (4, 4, 8), None)}),
    ("1D 32K NA", (32768,), (2048,), (1,), {HOPPER: ((128,), (128,), 0.094848), BLACKWELL: ((256,), (128,), 0.058111)}),
    ("1D 32K GNA stride 256", (32768,), (2048,), (256,), {HOPPER: ((128,), (128,), 0.062687), BLACKWELL: ((256,), (128,), 0.037888)}),
]
# cuDNN dense baselines measured by NATTEN (ms), for the same problems.
DENSE_MS = {("FLUX", HOPPER): 97.435, ("FLUX", BLACKWELL): 43.313, ("HunyuanVideo", HOPPER): 283.327,
            ("HunyuanVideo", BLACKWELL): 135.265, ("1D", HOPPER): 0.787392, ("1D", BLACKWELL): 0.424766}


def rows():
    for name, grid, window, stride, archs in CASES:
        heads = 1 if name.startswith("1D") else 24
        wl = Workload.on_grid(grid, heads=heads, head_dim=128, dtype="fp16")
        pattern = Neighborhood(window, stride=stride)
        for hw, (q_tile, kv_tile, measured_ms) in archs.items():
            policy = "block-sparse" if len(q_tile) < len(grid) else "range"
            r = predict(wl, pattern, hw, tiling=Tiling(q_tile, kv_tile, policy))
            s, tt = r.speedup_vs_dense, r.pattern.breakdown_s
            kernel_ms = 1e3 * (r.pattern.predicted_s - tt.get("token_permutation", 0.0))
            yield {"problem": name, "hw": hw, "q_tile": "x".join(map(str, q_tile)),
                   "kv_tile": "x".join(map(str, kv_tile)), "flop_bound": s["flop"], "tile_bound": s["tile"],
                   "predicted_speedup": s["predicted"], "partial_tiles": r.pattern.counts.tiles.partial,
                   "predicted_kernel_ms": kernel_ms, "measured_kernel_ms": measured_ms,
                   "measured_dense_ms": DENSE_MS.get((name.split()[0], hw)),
                   "predicted_dense_ms": 1e3 * (r.dense.predicted_s - r.dense.breakdown_s.get("token_permutation", 0.0))}


def main() -> None:
    out = list(rows())
    if "--json" in sys.argv:
        print(json.dumps(out, indent=2))
        return
    for r in out:
        meas = f"{r['measured_kernel_ms']:.3f}" if r["measured_kernel_ms"] else "-"
        print(f"{r['problem']:<40} {r['hw']:<9} {r['q_tile']:>6}/{r['kv_tile']:<6} flop {r['flop_bound']:6.2f}x "
              f"tile {r['tile_bound']:6.2f}x pred {r['predicted_speedup']:6.2f}x partial {r['partial_tiles']:>8} "
              f"kernel ms pred {r['predicted_kernel_ms']:8.3f} meas {meas:>8} | dense pred "
              f"{r['predicted_dense_ms']:8.3f} meas {r['measured_dense_ms'] or '-'}")


if __name__ == "__main__":
    main()
