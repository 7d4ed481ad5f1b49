"""Predict-level sweep rows without the report objects: the GPU tile model's numbers only.

``attnsim.predict`` builds a full report per configuration: counts with their description and
assumptions, the roofline, the tile model's TileTime, energy, and the baseline. A sweep keeps
a dozen numbers per row. For the common case (a single fused mask kernel priced by the GPU
tile model, no calibrated kernel model for the device) this module computes just those
numbers, with the functions predict itself uses: the pattern's exact pairs and touched keys,
``count_tiles``, the counting rules (``_flops``, ``_bytes``), the roofs, the tile model's
breakdown (memoised per CTA work histogram) and the baseline priced once per shape. Rows it
does not cover (CPUs, systolic/optical targets, multi-op or data-dependent patterns,
calibrated kernels) return None, and the caller runs ``predict``. tests/test_sweep.py checks
that every covered row equals predict exactly, on random grids.
"""
from __future__ import annotations

from .counting import _bytes, _flops
from .hwmodels.calibration import load_overlay
from .hwmodels.profile import Profile
from .hwmodels.roofline import roof_times
from .hwmodels.tilecost import tile_breakdown
from .patterns import Pattern
from .predict_api import _ratio, padded_tokens, priced_baseline
from .tiles import TilingRequest, count_tiles
from .workload import Workload


def vectorisable(pattern: Pattern) -> bool:
    """A single fused mask kernel: counts follow from pairs by the mask rule (no op graph, no
    change of the workload the kernel runs)."""
    cls = type(pattern)
    return cls.op_graph is Pattern.op_graph and cls.effective_workload is Pattern.effective_workload


def covered(pattern: Pattern, hw: Profile, overlay_free: bool | None = None) -> bool:
    """Whether predict prices this with the GPU tile model and no kernel model: a GPU without a
    calibration overlay (``overlay_free``, when the caller already knows), and a tileable single
    fused mask kernel."""
    if hw.kind != "gpu" or not pattern.tileable or not vectorisable(pattern):
        return False
    return load_overlay(hw) is None if overlay_free is None else overlay_free


def tile_row(wl: Workload, pattern: Pattern, hw: Profile, request: TilingRequest, baseline: Pattern,
             cache: dict, overlay_free: bool | None = None) -> dict | None:
    """The sweep columns of ``predict(wl, pattern, hw, request, baseline)``, or None when
    ``covered`` is false. Raises what predict raises for invalid input."""
    pattern.check(wl)
    if not covered(pattern, hw, overlay_free):
        return None
    tiling = request.resolve(wl, pattern, hw)
    padded = padded_tokens(wl, pattern, tiling, hw)
    tiles = count_tiles(wl, pattern, tiling)
    pairs = pattern.pairs_per_head(wl)
    flops, traffic = _flops(wl, pairs), _bytes(wl, pattern.touched_keys(wl), wl.q_len * wl.kv_len)
    roofs = roof_times(hw, wl.dtype, flops.matmul, flops.exp, flops.softmax_other, traffic.compulsory)
    bound_by = max(roofs, key=roofs.get)
    breakdown, _ = tile_breakdown(wl, tiles, traffic, hw, padded)
    time_s = sum(breakdown.values())
    d = priced_baseline(wl, baseline, tiling, hw, padded, True, cache)
    heads = wl.heads_total
    return {"engine": "predict", "pairs_per_head": pairs, "matmul_flops": flops.matmul, "exp": flops.exp,
            "compulsory_bytes": traffic.compulsory, "bound_by": bound_by, "roofline_s": roofs[bound_by],
            "time_s": time_s, "baseline_time_s": d.predicted_s, "speedup": _ratio(d.predicted_s, time_s),
            "speedup_flop": _ratio(d.counts.flops.matmul, flops.matmul),
            "speedup_tile": _ratio(d.counts.tiles.visited * d.counts.workload.heads_total, tiles.visited * heads),
            "speedup_roofline": _ratio(d.roofline.time_s, roofs[bound_by])}
