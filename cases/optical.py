"""ConvShareViT (arXiv 2504.11517) on a 4f optical system next to standard ViT attention on a GPU,
and a sweep of the optical system's frame rate x resolution that finds where it starts to win.

The optical side follows attnsim.hwmodels.optical: the block's linear layers (Q, K, V and output
projections) are ConvShareViT's shared depthwise convolutions (one weight kernel per projection in
the Fourier plane, every token's embedding map tiled over the input modulator), Q·Kᵀ and P·V are
correlations of activations, softmax runs on the digital host. The GPU side is standard ViT
attention: attnsim's tile model for the attention core plus four dense projection GEMMs at the
GPU's roofline (peak matmul rate or memory bandwidth, whichever binds, plus a launch each), which
is optimistic for the GPU.

Three scopes: ``projections`` (the linear layers ConvShareViT turns into convolutions),
``core`` (scores, softmax, P·V: what attnsim counts) and ``block`` (both).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from rich.console import Group
from rich.table import Table
from rich.text import Text

from attnsim.counting import count
from attnsim.errors import AttnsimError
from attnsim.hwmodels import Profile, load_profile
from attnsim.hwmodels.optical import STAGES, attention_jobs, price_jobs, shared_conv_job
from attnsim.hwmodels.profile import Quantity
from attnsim.hwmodels.targets import TargetTime
from attnsim.patterns import Dense
from attnsim.predict_api import predict
from attnsim.workload import DTYPES, Workload

from . import load_cases

CASE = "convsharevit"
DEFAULT_OPTICAL = "Optical4f-LCoS"  # SLM-based 4f; Optical4f-DMD is the DMD-based one
DEFAULT_GPU = "RTX-4090"  # placeholder: the paper's GPU was not found
SCOPES = ("projections", "core", "block")
PROJECTIONS = 4  # Q, K, V and the output projection
DEFAULT_FRAME_RATES_HZ = (60.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)
DEFAULT_RESOLUTIONS = ((1920, 1080), (3840, 2160), (7680, 4320), (15360, 8640))
# Frame-clocked devices the sweep sets to one rate and one resolution.
_PLANES = ("modulator", "filter", "detector")
MAPPING = {
    "optical": ["Q, K, V, output projections as shared depthwise convolutions (weights in the Fourier plane)",
                "Q·Kᵀ and P·V as correlations of activations (both operands written per frame)"],
    "digital host": ["softmax: exp, row max, row sums, normalisation",
                     "recombining sign passes and bit slices of every detected sample"],
    "source": "ConvShareViT, arXiv 2504.11517v1, abstract: linear layers in MHSA and MLPs become 'a depthwise "
              "convolutional layer with shared weights across input channels'; the model 'can be employed using "
              "only the convolution operation' (so Q·Kᵀ and P·V are convolutions too). The in-aperture layout "
              "is inferred (attnsim.hwmodels.optical.cell_layout); the MLP is outside the attention block.",
}


@dataclass(frozen=True)
class Setting:
    """The ViT attention block priced. Default: ViT-B/16 at 224x224 (Dosovitskiy et al. 2020: 196
    patches + class token, 12 heads of 64) at batch 64 (inferred: the authors' FatNet GPU timing
    script, github.com/riadibadulla/simulator measuring_inference_time.py, times batches of 64);
    the paper's own CIFAR-100 model shapes were not found."""

    seq: int = 197
    heads: int = 12
    head_dim: int = 64
    batch: int = 64
    dtype: str = "bf16"

    @property
    def workload(self) -> Workload:
        return Workload.sequence(self.seq, batch=self.batch, heads=self.heads, head_dim=self.head_dim,
                                 dtype=self.dtype)

    @property
    def embed_dim(self) -> int:
        return self.heads * self.head_dim


def optical_scopes(setting: Setting, hw: Profile) -> dict[str, TargetTime]:
    """The block's three scopes priced on an optical4f profile."""
    counts = count(setting.workload, Dense())
    proj = shared_conv_job("projections", setting.batch * setting.seq, setting.embed_dim, PROJECTIONS, hw)
    core = attention_jobs(counts, hw)
    exp, other = counts.flops.exp, counts.flops.softmax_other
    return {"projections": price_jobs([proj], 0, 0, hw),
            "core": price_jobs(core, exp, other, hw),
            "block": price_jobs([proj, *core], exp, other, hw)}


def _gemm_s(m: int, k: int, n: int, gpu: Profile, dtype: str) -> float:
    flops, nbytes = 2 * m * k * n, (m * k + k * n + m * n) * DTYPES[dtype]
    return max(flops / gpu.matmul_peak(dtype), nbytes / gpu.get("memory_bw_bytes_per_s")) + gpu.get("launch_overhead_s")


def _board_bound(gpu: Profile, time_s: float) -> dict[str, float]:
    return {"board_power_bound": gpu.get("tdp_w") * time_s} if "tdp_w" in gpu.fields else {}


def gpu_scopes(setting: Setting, gpu: Profile) -> dict[str, dict]:
    """Standard ViT attention on a GPU profile, by scope: {time_s, breakdown_s, bound_by, energy_j}."""
    r = predict(setting.workload, Dense(), gpu)
    core = {"time_s": r.pattern.predicted_s, "breakdown_s": dict(r.pattern.breakdown_s),
            "bound_by": f"{r.pattern.roofline.bound_by} (tile model)", "energy_j": dict(r.pattern.energy_j)}
    proj_s = PROJECTIONS * _gemm_s(setting.batch * setting.seq, setting.embed_dim, setting.embed_dim, gpu,
                                   setting.dtype)
    projections = {"time_s": proj_s, "breakdown_s": {"projection GEMMs": proj_s},
                   "bound_by": "projection GEMMs (roofline)", "energy_j": _board_bound(gpu, proj_s)}
    block_energy = {k: core["energy_j"].get(k, 0.0) + projections["energy_j"].get(k, 0.0)
                    for k in {**core["energy_j"], **projections["energy_j"]}}
    block = {"time_s": core["time_s"] + proj_s,
             "breakdown_s": {**{f"core: {k}": v for k, v in core["breakdown_s"].items()}, "projection GEMMs": proj_s},
             "bound_by": "core" if core["time_s"] >= proj_s else "projection GEMMs", "energy_j": block_energy}
    return {"projections": projections, "core": core, "block": block}


def _optical_dict(t: TargetTime) -> dict:
    return {"time_s": sum(t.breakdown_s.values()), "breakdown_s": dict(t.breakdown_s), "bound_by": t.bound_by,
            "energy_j": dict(t.energy_j), "assumptions": list(t.assumptions)}


def _profiles(optical: str, gpu: str) -> tuple[Profile, Profile]:
    hw, dev = load_profile(optical), load_profile(gpu)
    if hw.kind != "optical4f":
        raise AttnsimError(f"--hw {hw.name} is a {hw.kind} profile; the optical side needs an optical4f profile "
                           "(Optical4f-LCoS, Optical4f-DMD or your own file)")
    if dev.kind == "optical4f":
        raise AttnsimError(f"--gpu {dev.name} is an optical4f profile; the baseline needs a gpu, cpu or systolic "
                           "profile (e.g. RTX-4090, H100-SXM)")
    return hw, dev


def _claim() -> dict:
    (case,) = load_cases((CASE,))
    keys = ("metric", "value", "scope", "baseline", "quote", "where", "source")
    return {k: case.claim.get(k) for k in keys}


def convsharevit_comparison(optical: str = DEFAULT_OPTICAL, gpu: str = DEFAULT_GPU,
                            setting: Setting | None = None) -> dict:
    """ConvShareViT-style attention on ``optical`` (an optical4f profile) next to standard ViT
    attention on ``gpu``, per scope, with the stage breakdown, the dominating stage and the
    paper's claim. JSON-able."""
    setting = setting or Setting()
    hw, dev = _profiles(optical, gpu)
    opt = {k: _optical_dict(v) for k, v in optical_scopes(setting, hw).items()}
    ref = gpu_scopes(setting, dev)
    speedup = {s: ref[s]["time_s"] / opt[s]["time_s"] for s in SCOPES}
    claim = _claim()
    block = opt["block"]
    summary = (f"attnsim predicts {speedup['block']:.3g}x for the attention block on {hw.name} vs {dev.name} "
               f"(projections alone {speedup['projections']:.3g}x, core {speedup['core']:.3g}x); the block is "
               f"dominated by '{block['bound_by']}' ({block['breakdown_s'][block['bound_by']] / block['time_s']:.0%} "
               f"of its time). The paper claims up to {claim['value']}x ({claim['scope']}, theoretical, "
               f"{claim['where']}): not comparable as one number (whole network incl. MLP, GPU and shapes "
               "not found), but the stage breakdown shows where a 4f system loses its time.")
    return {"case": CASE, "claim": claim, "setting": setting.__dict__ | {"embed_dim": setting.embed_dim},
            "mapping": MAPPING, "optical": {"hw": hw.name, "scopes": opt}, "gpu": {"hw": dev.name, "scopes": ref},
            "speedup": speedup, "summary": summary}


def _set(field: str, value: float, unit: str, why: str) -> dict[str, Quantity]:
    return {field: Quantity(value, value, unit, f"sweep: {why}")}


def with_frame_clock(hw: Profile, width: int, height: int, rate_hz: float) -> Profile:
    """``hw`` with its modulator, filter and detector at ``width`` x ``height`` pixels and
    ``rate_hz`` frames per second. The exposure shrinks to at most half a frame period and the
    light source's power grows by the same factor, so each frame still collects the profile's
    photons (energy per frame unchanged)."""
    fields = dict(hw.fields)
    for plane in _PLANES:
        fields |= _set(f"{plane}_width_pixels", width, "pixels", "swept resolution")
        fields |= _set(f"{plane}_height_pixels", height, "pixels", "swept resolution")
        fields |= _set(f"{plane}_frame_rate_hz", rate_hz, "Hz", "swept frame rate")
    exposure = min(hw.get("detector_exposure_s"), 0.5 / rate_hz)
    fields |= _set("detector_exposure_s", exposure, "s", "at most half a frame period")
    fields |= _set("source_power_w", hw.get("source_power_w") * hw.get("detector_exposure_s") / exposure, "W",
                   "scaled to keep the photons per frame")
    return replace(hw, name=f"{hw.name}@{width}x{height},{rate_hz:g}Hz", fields=fields)


def sweep_optical(optical: str = DEFAULT_OPTICAL, gpu: str = DEFAULT_GPU, setting: Setting | None = None,
                  frame_rates_hz: tuple[float, ...] = DEFAULT_FRAME_RATES_HZ,
                  resolutions: tuple[tuple[int, int], ...] = DEFAULT_RESOLUTIONS) -> dict:
    """Speedup (GPU time / optical time) of every scope over frame rate x resolution, and per
    resolution the lowest swept frame rate where the optical system wins (None: not in range).
    JSON-able."""
    setting = setting or Setting()
    hw, dev = _profiles(optical, gpu)
    ref = {s: v["time_s"] for s, v in gpu_scopes(setting, dev).items()}
    grid, crossover = {s: [] for s in SCOPES}, {s: {} for s in SCOPES}
    for width, height in resolutions:
        rows = {s: [] for s in SCOPES}
        for rate in frame_rates_hz:
            priced = optical_scopes(setting, with_frame_clock(hw, width, height, rate))
            for scope, t in priced.items():
                rows[scope].append({"frame_rate_hz": rate, "speedup": ref[scope] / sum(t.breakdown_s.values()),
                                    "bound_by": t.bound_by})
        for scope in SCOPES:
            grid[scope].append({"resolution": [width, height], "points": rows[scope]})
            wins = [p["frame_rate_hz"] for p in rows[scope] if p["speedup"] >= 1]
            crossover[scope][f"{width}x{height}"] = min(wins) if wins else None
    return {"optical": hw.name, "gpu": dev.name, "setting": setting.__dict__, "gpu_time_s": ref,
            "frame_rates_hz": list(frame_rates_hz), "resolutions": [list(r) for r in resolutions],
            "speedup": grid, "crossover_hz": crossover,
            "note": "modulator, filter and detector set to each resolution and frame rate; bit depths, "
                    "DAC/ADC energies and the digital host unchanged"}


def _s(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def render_comparison(result: dict) -> Group:
    """Rich renderable of :func:`convsharevit_comparison`."""
    opt, ref = result["optical"]["scopes"], result["gpu"]["scopes"]
    s = result["setting"]
    head = Table(title=f"ConvShareViT attention block: {result['optical']['hw']} vs {result['gpu']['hw']} "
                       f"(seq {s['seq']}, {s['heads']} heads x {s['head_dim']}, batch {s['batch']})")
    for col in ("scope", "optical", "optical bound by", "GPU", "GPU bound by", "speedup"):
        head.add_column(col, justify="right" if col in ("optical", "GPU", "speedup") else "left")
    for scope in SCOPES:
        head.add_row(scope, _s(opt[scope]["time_s"]), opt[scope]["bound_by"], _s(ref[scope]["time_s"]),
                     ref[scope]["bound_by"], f"{result['speedup'][scope]:.3g}x")
    stages = Table(title="Optical stages (time, share of the scope)")
    stages.add_column("stage")
    for scope in SCOPES:
        stages.add_column(scope, justify="right")
    for stage in STAGES:
        stages.add_row(stage, *(f"{_s(opt[sc]['breakdown_s'][stage])} "
                                f"({opt[sc]['breakdown_s'][stage] / opt[sc]['time_s']:.0%})" for sc in SCOPES))
    energy = ", ".join(f"{k} {v:.3g} J" for k, v in opt["block"]["energy_j"].items())
    claim = result["claim"]
    lines = [f"Block energy on {result['optical']['hw']}: {energy}",
             f"Paper: {claim['value']}x {claim['metric']} ({claim['scope']}), {claim['where']}: \"{claim['quote']}\"",
             f"Runs optically: {'; '.join(result['mapping']['optical'])}. Digital host: "
             f"{'; '.join(result['mapping']['digital host'])}.", result["summary"]]
    return Group(head, stages, *(Text(line) for line in lines))


def render_sweep(result: dict, scope: str = "projections") -> Group:
    """Rich renderable of :func:`sweep_optical`: the speedup grid of ``scope`` and, for every
    scope and resolution, the crossover frame rate (or the stage that still binds at the top
    swept rate when there is none)."""
    grid = Table(title=f"{scope}: speedup of {result['optical']} (swept) over {result['gpu']} "
                       f"({_s(result['gpu_time_s'][scope])}); >= 1 means the optical system wins")
    grid.add_column("resolution")
    for rate in result["frame_rates_hz"]:
        grid.add_column(f"{rate:g} Hz", justify="right")
    for row in result["speedup"][scope]:
        cells = [f"[green]{p['speedup']:.3g}x[/]" if p["speedup"] >= 1 else f"{p['speedup']:.3g}x"
                 for p in row["points"]]
        grid.add_row("x".join(map(str, row["resolution"])), *cells)
    cross = Table(title="Lowest swept frame rate where the optical system wins")
    cross.add_column("scope")
    for w, h in result["resolutions"]:
        cross.add_column(f"{w}x{h}", justify="right")
    for sc in SCOPES:
        cells = []
        for row in result["speedup"][sc]:
            hz = result["crossover_hz"][sc]["x".join(map(str, row["resolution"]))]
            top = row["points"][-1]
            cells.append(f"{hz:g} Hz" if hz is not None
                         else f"never ({top['bound_by']}-bound at {top['frame_rate_hz']:g} Hz)")
        cross.add_row(sc, *cells)
    return Group(grid, cross, Text(result["note"]))
