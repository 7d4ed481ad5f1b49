"""count → price → compare with dense: the one call behind ``attnsim predict``."""
from __future__ import annotations

from dataclasses import dataclass

from .counting import Counts, count
from .hwmodels import Profile, Roofline, load_profile, roofline
from .hwmodels.roofline import launch_time_s
from .patterns import Dense, Pattern
from .tiles import Tiling, default_tiling
from .workload import Workload


@dataclass(frozen=True)
class Priced:
    """One pattern's counts priced on one device."""

    counts: Counts
    roofline: Roofline
    breakdown_s: dict[str, float]  # named components that add up to ``predicted_s``

    @property
    def predicted_s(self) -> float:
        return sum(self.breakdown_s.values())


def price(counts: Counts, hw: Profile) -> Priced:
    roof = roofline(counts, hw)
    breakdown = {f"{roof.bound_by} (binding roof)": roof.time_s, "launch": launch_time_s(counts, hw)}
    return Priced(counts, roof, breakdown)


@dataclass(frozen=True)
class Prediction:
    hw: Profile
    pattern: Priced
    dense: Priced

    @property
    def speedup_vs_dense(self) -> dict[str, float]:
        p, d = self.pattern, self.dense
        pt, dt = p.counts.tiles, d.counts.tiles
        return {
            "flop": d.counts.pairs_per_head / p.counts.pairs_per_head if p.counts.pairs_per_head else float("inf"),
            "tile": dt.visited / pt.visited if pt.visited else float("inf"),
            "roofline": d.roofline.time_s / p.roofline.time_s,
            "predicted": d.predicted_s / p.predicted_s,
        }

    @property
    def assumptions(self) -> list[str]:
        notes = list(self.pattern.counts.assumptions) + list(self.pattern.roofline.assumptions)
        notes.append(f"predicted time = binding roof + {self.hw.name} launch overhead per kernel; "
                     "no tile-level effects (wave quantization, masking, partial tiles) yet")
        return notes

    def to_dict(self) -> dict:
        p = self.pattern
        return {
            "hw": {"name": self.hw.name, "kind": self.hw.kind},
            "workload": _workload_dict(p.counts.workload),
            "pattern": p.counts.pattern,
            "counts": p.counts.to_dict(),
            "tiles": p.counts.tiles_dict(),
            "time_s": {"roofline": p.roofline.time_s, "predicted": p.predicted_s,
                       "roofs": p.roofline.roofs_s, "breakdown": p.breakdown_s,
                       "dense_predicted": self.dense.predicted_s},
            "bound_by": p.roofline.bound_by,
            "speedup_vs_dense": self.speedup_vs_dense,
            "assumptions": self.assumptions,
        }


def _workload_dict(wl: Workload) -> dict:
    out = {f: getattr(wl, f) for f in wl.__dataclass_fields__}
    out["grid"] = list(wl.grid) if wl.grid else None
    return out


def predict(workload: Workload, pattern: Pattern, hw: Profile | str,
            tiling: Tiling | None = None) -> Prediction:
    """Exact counts of ``pattern`` and of dense attention on ``workload`` (both tiled alike),
    priced on ``hw``. Without a tiling: FlexAttention 128x128 blocks on 1D layouts, NATTEN's
    Hopper boxes on grids (:func:`attnsim.tiles.default_tiling`)."""
    profile = load_profile(hw) if isinstance(hw, str) else hw
    pattern.check(workload)
    tiling = tiling or default_tiling(workload, pattern)
    return Prediction(profile, price(count(workload, pattern, tiling), profile),
                      price(count(workload, Dense(), tiling), profile))
