"""Why each bound is what it is, in words: the text behind ``attnsim explain``.

Each section carries one sentence-level explanation and the numbers it rests on, so the CLI can
print prose and ``--json`` can hand the same facts to a script.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .cli.fmt import seconds
from .patterns.base import Pattern
from .predict_api import Prediction
from .tiles import per_dim_fractions


@dataclass(frozen=True)
class Section:
    topic: str
    lines: tuple[str, ...]
    numbers: dict


def _x(value: float) -> str:
    return "unbounded" if math.isinf(value) else f"{value:.2f}x"


def _us(value_s: float) -> str:
    return seconds(value_s)


def flop_section(r: Prediction, pattern: Pattern) -> Section:
    c = r.pattern.counts
    dims = []
    if pattern.tileable and not pattern.edge_tiled:
        lay = pattern.layout(c.workload)
        dims = [rule.pairs(a, b) / (a * b) for rule, a, b in zip(lay.rules, lay.q_extents, lay.kv_extents)]
    per_query = c.pairs_per_head / c.workload.q_len
    lines = [f"Each query keeps {per_query:,.{0 if per_query.is_integer() else 1}f} of {c.workload.kv_len:,} keys "
             f"on average (density {c.density:.4%}), so at most {_x(r.speedup_vs_dense['flop'])} fewer "
             "matmul FLOPs than dense."]
    if len(dims) > 1:
        per = ", ".join(f"dim {i}: {f:.3f}" for i, f in enumerate(dims))
        lines.append(f"The pattern is a product of per-dimension rules; kept fractions {per} multiply "
                     f"to {math.prod(dims):.4f}.")
    return Section("FLOP bound", tuple(lines), {"density": c.density, "per_dim_density": dims,
                                                "bound": r.speedup_vs_dense["flop"]})


def tile_section(r: Prediction, pattern: Pattern) -> Section | None:
    p, d = r.pattern.counts, r.dense.counts
    t = p.tiles
    if t is None:
        return None
    shape = f"Q {'x'.join(map(str, t.q_tile))} / KV {'x'.join(map(str, t.kv_tile))}"
    lines = [f"Tiles {shape}, {t.policy} policy: the pattern visits {t.visited:,} of the {d.tiles.visited:,} "
             f"tiles dense visits per head ({_x(r.speedup_vs_dense['tile'])} tile bound); "
             f"{t.full:,} full, {t.partial:,} partial, {t.masked:,} masked."]
    dims = per_dim_fractions(p.workload, pattern, t.tiling)
    if dims and len(dims) > 1:
        key = "range" if t.policy == "range" else "nonempty" if t.policy == "block-sparse" else None
        if key:
            per = ", ".join(f"dim {i}: {x[key]:.3f}" for i, x in enumerate(dims))
            lines.append(f"Visited fraction of KV tiles per dimension ({per}) multiply to "
                         f"{math.prod(x[key] for x in dims):.4f}.")
    if t.visited:
        kept = p.pairs_per_head / t.visited_pairs
        lines.append(f"Visited tiles hold {t.visited_pairs:,} (query, key) slots per head, {kept:.1%} of them "
                     "kept: the rest is masked-out or padding work the kernel still computes, which is "
                     "why the tile bound is below the FLOP bound.")
    return Section("tile bound", tuple(lines), {"visited": t.visited, "dense_visited": d.tiles.visited,
                                                "per_dim": dims, "bound": r.speedup_vs_dense["tile"]})


def roofline_section(r: Prediction) -> Section:
    roof = r.pattern.roofline
    others = ", ".join(f"{k} {_us(v)}" for k, v in roof.roofs_s.items() if k != roof.bound_by)
    lines = [f"Roofline: {roof.bound_by} binds at {_us(roof.time_s)} ({others})."]
    return Section("roofline", tuple(lines), {"bound_by": roof.bound_by, "roofs_s": roof.roofs_s})


def tile_model_section(r: Prediction) -> Section | None:
    tt = r.pattern.tile_time
    if tt is None:
        return None
    lines = []
    for kernel, unit in tt.unit_costs_s.items():
        pipe = tt.binding_pipe[kernel]
        others = ", ".join(f"{k} {_us(unit[k])}" for k in ("mma", "exp", "softmax", "load") if k != pipe)
        lines.append(f"{kernel}: a tile costs {_us(unit[pipe])}, paced by {pipe} ({others}), plus "
                     f"{_us(unit['tile_overhead'])} overhead; a masked tile adds {_us(unit['mask'])}; "
                     f"{tt.ctas[kernel]:,} CTAs fill {tt.waves[kernel]:.2f} waves.")
    pred, dense = r.pattern.breakdown_s, r.dense.breakdown_s
    total = sum(pred.values())
    top = sorted(pred.items(), key=lambda kv: -kv[1])[:3]
    lines.append("Largest parts of the predicted time: " +
                 ", ".join(f"{k} {v / total:.0%}" for k, v in top) + ".")
    lines.append(_gap_sentence(r, pred, dense))
    return Section("tile model", tuple(lines), {"breakdown_s": pred, "unit_costs_s": tt.unit_costs_s,
                                                "binding_pipe": tt.binding_pipe, "waves": tt.waves})


def _gap_sentence(r: Prediction, pred: dict, dense: dict) -> str:
    """Which breakdown parts grow most, as a share of the time, from dense to the pattern."""
    s = r.speedup_vs_dense
    if s["tile"] is not None and s["predicted"] > s["tile"]:
        waves = max(r.dense.tile_time.waves.values())
        return (f"Predicted speedup {_x(s['predicted'])} is above the tile bound: dense's {waves:.2f} "
                f"waves of CTAs round up to {math.ceil(waves)}, while the pattern's uneven CTAs pack tighter.")
    total, dense_total = sum(pred.values()), sum(dense.values())
    growth = {k: pred.get(k, 0.0) / total - dense.get(k, 0.0) / dense_total
              for k in ("masking", "cta_prologue_epilogue", "token_permutation", "launch",
                        "wave_quantization", "memory_floor")}
    culprits = [k for k, v in sorted(growth.items(), key=lambda kv: -kv[1]) if v > 0.01][:2]
    text = f"Predicted speedup {_x(s['predicted'])} is {s['tile'] / s['predicted']:.2f}x below the tile bound"
    if not culprits:
        return text + "."
    return text + f", mostly from {' and '.join(culprits)} (a larger share of the pattern's time than of dense's)."


def explain(r: Prediction, pattern: Pattern) -> list[Section]:
    sections = [flop_section(r, pattern), tile_section(r, pattern), roofline_section(r),
                tile_model_section(r)]
    return [s for s in sections if s is not None]
