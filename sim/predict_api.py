"""count → price → compare with dense: the one call behind ``attnsim predict``."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .counting import Counts, count
from .errors import PricingError
from .hwmodels import Profile, Roofline, load_profile, roofline
from .hwmodels.calibration import load_overlay
from .hwmodels.energy import energy_j
from .hwmodels.targets import PRICED_KINDS, price_target
from .hwmodels.kernelcost import FEATURES, default_coefficients, default_kernel, features, kernel_refusal
from .hwmodels.roofline import launch_time_s
from .hwmodels.tilecost import TileTime, tile_time
from .patterns import Dense, Pattern
from .tiles import Tiling, TilingRequest, permuted_tokens
from .workload import Workload


@dataclass(frozen=True)
class Priced:
    """One pattern's counts priced on one device."""

    counts: Counts
    roofline: Roofline
    breakdown_s: dict[str, float]  # named components that add up to ``predicted_s``
    tile_time: TileTime | None = None
    kernel_note: str | None = None  # set when a per-kernel work model priced it
    energy_j: dict[str, float] = field(default_factory=dict)  # joules by component
    energy_note: str | None = None

    @property
    def predicted_s(self) -> float:
        return sum(self.breakdown_s.values())


def price(counts: Counts, hw: Profile, padded: tuple[int, int] | None = None, tile_model: bool = True) -> Priced:
    """Roofline always; on GPUs, a single fused attention kernel with tile counts is priced by
    the tile-level model. Multi-op patterns get the roofline plus one launch per kernel.
    Systolic and optical targets use their own stage models (attnsim.hwmodels.targets)."""
    if hw.kind in PRICED_KINDS:  # the target's own notes say how its energy was derived
        tt = price_target(counts if tile_model else replace(counts, tiles=None), hw)
        roof = Roofline(dict(tt.breakdown_s), tt.bound_by, max(tt.breakdown_s.values()), tt.assumptions)
        return Priced(counts, roof, dict(tt.breakdown_s), energy_j=dict(tt.energy_j))
    roof = roofline(counts, hw)
    if tile_model and hw.kind == "gpu" and tiled_kernel(counts, hw):
        tt = tile_time(counts, hw, padded)
        return with_energy(Priced(counts, roof, tt.breakdown_s, tt), hw)
    launches = launch_time_s(counts, hw) if counts.kernels is None else (
        len(counts.kernels) * hw.get("launch_overhead_s"))
    return with_energy(Priced(counts, roof, {f"{roof.bound_by} (binding roof)": roof.time_s, "launch": launches}), hw)


def with_energy(p: Priced, hw: Profile) -> Priced:
    joules, note = energy_j(p.counts, hw, p.predicted_s)
    return replace(p, energy_j=joules, energy_note=note)


def tiled_kernel(counts: Counts, hw: Profile) -> bool:
    """Whether a tile-level model (GPU, systolic) prices these counts: one fused kernel with tiles."""
    return hw.kind in ("gpu", "systolic") and counts.tiles is not None and counts.kernels is None


def price_kernel(wl: Workload, pattern: Pattern, hw: Profile, kernel: str, overlay) -> Priced:
    """Price with a kernel's work model (hwmodels.kernelcost): calibrated coefficients from the
    overlay when it has the kernel, else the profile's uncalibrated peaks."""
    feats = features(wl, pattern, kernel, hw)
    if overlay is not None and kernel in overlay.kernels:
        coeffs = overlay.kernels[kernel]
        test = overlay.errors.get(kernel, {}).get("test") or {}
        err = f", held-out MAPE {test['mape']:.1%} on {test['n']} points" if test.get("n") else ""
        note = f"{kernel} work model calibrated on measurements ({overlay.path}{err})"
    else:
        coeffs = default_coefficients(hw, wl.dtype)
        note = f"{kernel} work model, uncalibrated (profile peaks; run attnsim calibrate)"
    counts = count(wl, pattern)
    breakdown = {f"{kernel} {f}": coeffs[f] * feats[f] for f in FEATURES if coeffs[f] * feats[f] > 0}
    return with_energy(Priced(counts, roofline(counts, hw), breakdown, kernel_note=note), hw)


def _kernel_for(wl: Workload, pattern: Pattern, hw: Profile, kernel: str | None, overlay) -> str | None:
    """The kernel model to price with: the one asked for, or the pattern's default kernel when a
    calibration overlay has it (and its model fits the pattern); None: the analytical models
    (tile model / roofline). Multi-op patterns have naive-runner kernels (hwmodels.opgraphcost)."""
    if kernel is None:
        k = default_kernel(pattern, hw)
        usable = overlay is not None and k in overlay.kernels and kernel_refusal(k, wl, pattern) is None
        return k if usable else None
    why = kernel_refusal(kernel, wl, pattern)  # unknown kernel names raise here
    if hw.kind != "cpu" and (overlay is None or kernel not in overlay.kernels):
        raise PricingError(f"--kernel {kernel} on {hw.name}: GPU kernel models need a calibration overlay "
                           "(attnsim calibrate); without --kernel the tile model prices it")
    if why is not None:
        raise PricingError(why)
    return kernel


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("inf")


@dataclass(frozen=True)
class Prediction:
    hw: Profile
    pattern: Priced
    dense: Priced

    @property
    def speedup_vs_dense(self) -> dict[str, float]:
        p, d = self.pattern, self.dense
        return {
            # matmul FLOPs, not pairs: equal for masks, and counts routing or latent work of
            # multi-op patterns (MoBA's gate, MLA's decompression, linear attention's state)
            "flop": _ratio(d.counts.flops.matmul, p.counts.flops.matmul),
            # tiles of every (batch, head) problem: patterns may run fewer heads (SQA, CCA)
            "tile": _ratio(d.counts.tiles.visited * d.counts.workload.heads_total,
                           p.counts.tiles.visited * p.counts.workload.heads_total) if p.counts.tiles else None,
            "roofline": _ratio(d.roofline.time_s, p.roofline.time_s),
            "predicted": _ratio(d.predicted_s, p.predicted_s),
        }

    @property
    def assumptions(self) -> list[str]:
        p = self.pattern
        notes = list(p.counts.assumptions) + list(p.roofline.assumptions)
        if p.energy_note is not None:
            notes.append(p.energy_note)
        if p.kernel_note is not None:
            notes.append(f"predicted time: {p.kernel_note}; baseline: {self.dense.kernel_note}")
        elif p.tile_time is not None:
            notes += list(p.tile_time.assumptions)
        elif self.hw.kind in PRICED_KINDS:
            pass  # the target's stage model states its own assumptions (in the roofline's)
        elif p.counts.kernels is not None:
            notes.append(f"multi-op pattern: predicted time = binding roof over all ops (perfect overlap) + "
                         f"one launch per kernel ({', '.join(p.counts.kernels)}); no tile-level model yet, "
                         "so the baseline is priced the same way (roofline + launch)")
        else:
            notes.append(f"predicted time = binding roof + {self.hw.name} launch overhead per kernel "
                         f"(no tile-level model for kind {self.hw.kind} yet)")
        return notes

    def to_dict(self) -> dict:
        p = self.pattern
        out = {
            "hw": {"name": self.hw.name, "kind": self.hw.kind},
            "workload": _workload_dict(self.dense.counts.workload),
            "pattern": p.counts.pattern,
            "baseline": self.dense.counts.pattern,
            "counts": p.counts.to_dict(),
            "tiles": p.counts.tiles_dict(),
            "time_s": {"roofline": p.roofline.time_s, "predicted": p.predicted_s,
                       "roofs": p.roofline.roofs_s, "breakdown": p.breakdown_s,
                       "dense_predicted": self.dense.predicted_s,
                       "dense_breakdown": self.dense.breakdown_s},
            "bound_by": p.roofline.bound_by,
            "energy_j": sum(p.energy_j.values()) if p.energy_j else None,
            "energy_breakdown_j": p.energy_j,
            "speedup_vs_dense": self.speedup_vs_dense,
            "assumptions": self.assumptions,
        }
        if p.counts.workload != self.dense.counts.workload:  # e.g. SQA runs fewer query heads
            out["pattern_workload"] = _workload_dict(p.counts.workload)
        if p.tile_time is not None:
            tt = p.tile_time
            out["tile_model"] = {"binding_pipe": tt.binding_pipe, "ctas": tt.ctas, "waves": tt.waves}
        return out


def _workload_dict(wl: Workload) -> dict:
    out = {f: getattr(wl, f) for f in wl.__dataclass_fields__}
    out["grid"] = list(wl.grid) if wl.grid else None
    return out


def predict(workload: Workload, pattern: Pattern, hw: Profile | str,
            tiling: Tiling | TilingRequest | None = None, baseline: Pattern | None = None,
            kernel: str | None = None, baseline_cache: dict | None = None) -> Prediction:
    """Exact counts of ``pattern`` and of dense attention on ``workload`` (both tiled alike),
    priced on ``hw``. Unset tiles come from the device (:func:`attnsim.tiles.default_tiling`):
    FlexAttention 128x128 blocks on 1D layouts, NATTEN's fused-kernel boxes on grids.
    ``baseline`` (default dense) is what "speedup vs dense" compares against, e.g. Causal()
    for a causal sparse pattern whose paper compares against causal full attention.
    ``kernel`` prices a named real kernel's work model (also used by default when the profile
    has a calibration overlay for the pattern's usual kernel). ``baseline_cache`` (a dict the
    caller keeps) reuses priced baselines across calls: sweeps price one baseline per shape."""
    baseline = baseline or Dense()
    profile = load_profile(hw) if isinstance(hw, str) else hw
    pattern.check(workload)
    overlay = load_overlay(profile)
    chosen = _kernel_for(workload, pattern, profile, kernel, overlay)
    if chosen is not None:
        return Prediction(profile, price_kernel(workload, pattern, profile, chosen, overlay),
                          price_kernel(workload, baseline, profile, default_kernel(baseline, profile), overlay))
    if not pattern.tileable:  # data-dependent masks: no tile counts for it or its baseline
        return Prediction(profile, price(count(workload, pattern), profile),
                          price(count(workload, baseline), profile))
    if not isinstance(tiling, Tiling):
        tiling = (tiling or TilingRequest()).resolve(workload, pattern, profile)
    padded = padded_tokens(workload, pattern, tiling, profile)
    counts = count(workload, pattern, tiling)
    baseline_priced = priced_baseline(workload, baseline, tiling, profile, padded, tiled_kernel(counts, profile),
                                      {} if baseline_cache is None else baseline_cache)
    return Prediction(profile, price(counts, profile, padded), baseline_priced)


def padded_tokens(workload: Workload, pattern: Pattern, tiling: Tiling, profile: Profile) -> tuple[int, int] | None:
    """Tokens per problem in NATTEN's permuted layout, or None when the kernel tiles in place:
    CUTLASS-2.x FNA (Ampere/Ada) tiles the grid in place; Hopper/Blackwell FNA permute tokens."""
    fused = profile.natten_tiles
    return None if fused and not fused.token_permute else permuted_tokens(workload, pattern, tiling)


def priced_baseline(workload: Workload, baseline: Pattern, tiling: Tiling, profile: Profile,
                    padded: tuple[int, int] | None, same_level: bool, cache: dict) -> Priced:
    """The baseline tiled like the pattern, priced once per key in ``cache``. A pattern the tile
    model cannot price (several kernels, ``same_level`` False) is compared with a baseline
    priced at the same level (roofline + launches), never with the tile model's overheads."""
    key = (workload, baseline, tiling, id(profile), padded, same_level)
    if key not in cache:
        cache[key] = price(count(workload, baseline, tiling), profile, padded, tile_model=same_level)
    return cache[key]
