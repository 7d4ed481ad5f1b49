"""Tile-level GPU time: what a fused attention kernel does with the tiles it visits.

One CTA per (Q tile, head, batch) walks its visited KV tiles (forward; the backward is priced
with the same per-CTA work, see ASSUMPTIONS). Per visited tile, the tensor cores, the exp unit,
the FP32 softmax pipes and the L2->SM operand loads overlap, so the tile costs the slowest of
them plus a fixed per-iteration overhead; a masked tile also evaluates the mask on every score.
Each CTA pays a prologue/epilogue (pipeline fill, Q read, O write). CTAs run on
``SMs x ctas_per_unit`` slots, longest first; the gap between that makespan and perfectly even
work is the wave-quantization loss. A kernel is never faster than its compulsory HBM traffic.
Launches and NATTEN's token permutation (memory-bound copies in and out of the tiled layout)
come on top. Every term is a named entry of the breakdown; they add up to the predicted time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from attnsim.counting import BWD_SOFTMAX_OPS_PER_PAIR, FWD_SOFTMAX_OPS_PER_PAIR, LSE_BYTES, Bytes, Counts
from attnsim.tiles import TileCounts
from attnsim.workload import Workload

from .profile import Profile, derived
from .scheduling import lpt_makespan

KERNEL_PASSES = {"fwd": ("fwd",), "decode": ("fwd",), "bwd": ("bwd",), "fwd+bwd": ("fwd", "bwd")}
# Kernels per pass: FlashAttention-2/3 backward runs a delta = rowsum(dO*O) pre-pass, the
# main kernel and a dQ fp32->dtype conversion.
KERNELS = {"fwd": 1, "bwd": 3}
ASSUMPTIONS = (
    "tile model: per visited tile max(MMA, exp, softmax, operand load) + a fixed overhead; "
    "masked tiles add mask evaluation on every score; CTAs = Q tiles x heads x batch, longest "
    "first on SMs x ctas_per_unit slots; never faster than compulsory HBM bytes",
    "tile-model parameters (MMA efficiency, L2 bandwidth, per-tile/per-CTA overheads, mask ops) "
    "are the profile's rough defaults until `attnsim calibrate` fits them to measurements",
    "backward: priced with the forward's per-Q-tile work distribution (kernels that parallelise "
    "over KV tiles see the transposed one; equal for symmetric patterns)",
)


@dataclass(frozen=True)
class Rates:
    """Per-SM throughputs (each CTA slot gets 1/ctas_per_unit of them)."""

    mma_flops: float
    exp: float
    vector_flops: float
    l2_bytes: float
    hbm_bytes: float
    clock_hz: float
    slots: int
    ctas_per_unit: int

    @classmethod
    def of(cls, hw: Profile, dtype: str) -> "Rates":
        sms = hw.get("compute_units")
        per_unit = max(1, round(hw.get("ctas_per_unit")))
        return cls(hw.matmul_peak(dtype) * hw.get("tile_mma_efficiency") / sms, hw.get("exp_per_s") / sms,
                   hw.get("vector_flops_per_s") / sms, hw.get("l2_bw_bytes_per_s") / sms,
                   hw.get("memory_bw_bytes_per_s") / sms, hw.get("clock_hz"),
                   int(sms) * per_unit, per_unit)


@dataclass(frozen=True)
class TileTime:
    breakdown_s: dict[str, float]
    binding_pipe: dict[str, str]   # pass -> pipe that paces a tile
    unit_costs_s: dict[str, dict[str, float]]  # pass -> per-tile pipes, mask, overhead, per-CTA
    ctas: dict[str, int]           # pass -> CTAs launched
    waves: dict[str, float]        # pass -> CTAs / slots
    assumptions: tuple[str, ...]

    @property
    def total_s(self) -> float:
        return sum(self.breakdown_s.values())


@dataclass(frozen=True)
class PassUnit:
    """What one CTA's tiles cost in one pass: per-tile pipe times, the pipe that paces a tile,
    the extra of a masked tile, a fixed per-tile overhead and the per-CTA prologue/epilogue."""

    pipes: dict[str, float]
    pipe: str
    mask_s: float
    overhead_s: float
    cta_s: float

    def as_dict(self) -> dict[str, float]:
        return {**self.pipes, "mask": self.mask_s, "tile_overhead": self.overhead_s, "cta": self.cta_s}


def pass_unit(wl: Workload, q_tile: tuple, kv_tile: tuple, kernel: str, hw: Profile) -> PassUnit:
    """The per-tile and per-CTA costs of one pass; they depend on the workload, the tile shape
    and the device only, so they are memoised per profile (a sweep varies the pattern)."""
    return derived(hw, ("pass_unit", wl, q_tile, kv_tile, kernel), lambda: _pass_unit(wl, q_tile, kv_tile, kernel, hw))


def _pass_unit(wl: Workload, q_tile: tuple, kv_tile: tuple, kernel: str, hw: Profile) -> PassUnit:
    r = rates(hw, wl.dtype)
    tq, tk = math.prod(q_tile), math.prod(kv_tile)
    dqk, dv, e, eo = wl.qk_head_dim, wl.v_head_dim, wl.element_bytes, wl.output_bytes
    scores = tq * tk
    if kernel == "fwd":
        mm = 2 * (dqk + dv)                       # S = QK^T, O += PV
        other = scores * FWD_SOFTMAX_OPS_PER_PAIR + tq * dv  # + rescale of the O accumulator
        load = tk * (dqk + dv) * e                # K and V tiles
        cta_bytes = tq * (dqk * e + dv * eo + LSE_BYTES)
    else:
        mm = 2 * (3 * dqk + 2 * dv)               # S recompute, dP, dV, dQ, dK
        other = scores * BWD_SOFTMAX_OPS_PER_PAIR
        load = tq * (dqk + dv) * e + 2 * tq * LSE_BYTES  # Q and dO tiles, LSE and delta
        cta_bytes = 2 * tk * (dqk + dv) * e       # K, V in; dK, dV out
    pipes = {"mma": scores * mm / r.mma_flops, "exp": scores / r.exp,
             "softmax": other / r.vector_flops, "load": load / r.l2_bytes}
    # Integer compares and selects issue one per lane per clock: half the FMA FLOP rate.
    mask_s = scores * hw.get("mask_ops_per_score") / (r.vector_flops / 2)
    cta_s = hw.get("cta_overhead_cycles") / r.clock_hz + cta_bytes / r.hbm_bytes
    return PassUnit(pipes, max(pipes, key=pipes.get), mask_s, hw.get("tile_overhead_cycles") / r.clock_hz, cta_s)


def rates(hw: Profile, dtype: str) -> Rates:
    return derived(hw, ("rates", dtype), lambda: Rates.of(hw, dtype))


def _pass_bytes(traffic: Bytes, phase: str, kernel: str) -> float:
    by = traffic.by_tensor
    if phase == "fwd+bwd":
        return sum(v for k, v in by.items() if k.startswith(kernel + "_"))
    return traffic.compulsory


def _split_kv(work, heads: int, r: Rates) -> int:
    """FlashDecoding: split each (head, Q tile)'s KV tiles so that one wave fills the slots."""
    ctas = heads * int(work.count.sum())
    return int(max(1, min(int(work.visited.max(initial=1)), r.slots // max(ctas, 1))))


@dataclass(frozen=True)
class PassSchedule:
    """One pass's CTAs on the SM slots: the pacing pipe, the makespan, the compute parts (which
    with the wave-quantization gap add up to the makespan), CTAs and KV splits."""

    pipe: str
    makespan_s: float
    parts: dict[str, float]
    ctas: int
    splits: int
    unit: PassUnit


def pass_schedule(wl: Workload, tiles: TileCounts, kernel: str, hw: Profile) -> PassSchedule:
    """Memoised per profile by (workload, tile shape, work histogram, pass): a sweep over
    windows meets the same per-Q-tile work histogram many times (the memo holds the
    histogram, so its id stays unique while cached)."""
    key = ("schedule", wl, tiles.q_tile, tiles.kv_tile, id(tiles.work), kernel)
    work, sched = derived(hw, key, lambda: (tiles.work, _pass_schedule(wl, tiles, kernel, hw)))
    return sched if work is tiles.work else _pass_schedule(wl, tiles, kernel, hw)


def _pass_schedule(wl: Workload, tiles: TileCounts, kernel: str, hw: Profile) -> PassSchedule:
    r = rates(hw, wl.dtype)
    u = pass_unit(wl, tiles.q_tile, tiles.kv_tile, kernel, hw)
    work, heads = tiles.work, wl.heads_total
    splits = _split_kv(work, heads, r) if wl.phase == "decode" else 1
    visited, masked = (work.visited, work.masked) if splits == 1 else (-(-work.visited // splits),
                                                                      -(-work.masked // splits))
    mult = work.count * (heads * splits)
    c = r.ctas_per_unit  # a CTA sharing its SM with c-1 others runs c times slower
    durations = c * (u.cta_s + visited * (u.pipes[u.pipe] + u.overhead_s) + masked * u.mask_s)
    makespan = lpt_makespan(durations, mult, r.slots)
    tiles_run, masked_run, ctas = int(visited @ mult), int(masked @ mult), int(mult.sum())
    parts = {f"mainloop.{u.pipe}": c * tiles_run * u.pipes[u.pipe] / r.slots,
             "tile_overhead": c * tiles_run * u.overhead_s / r.slots,
             "masking": c * masked_run * u.mask_s / r.slots,
             "cta_prologue_epilogue": c * ctas * u.cta_s / r.slots}
    parts["wave_quantization"] = max(0.0, makespan - sum(parts.values()))
    return PassSchedule(u.pipe, makespan, parts, ctas, splits, u)


def tile_breakdown(wl: Workload, tiles: TileCounts, traffic: Bytes, hw: Profile,
                   padded: tuple[int, int] | None) -> tuple[dict[str, float], dict[str, PassSchedule]]:
    """The named time components (seconds, adding up to the prediction) and each pass's
    schedule, from a workload's tile counts and compulsory traffic."""
    out: dict[str, float] = {}
    passes = {}
    for kernel in KERNEL_PASSES[wl.phase]:
        sched = passes[kernel] = pass_schedule(wl, tiles, kernel, hw)
        parts = dict(sched.parts)
        hbm_s = _pass_bytes(traffic, wl.phase, kernel) / hw.get("memory_bw_bytes_per_s")
        parts["memory_floor"] = max(0.0, hbm_s - sched.makespan_s)
        parts["launch"] = (KERNELS[kernel] + (sched.splits > 1)) * hw.get("launch_overhead_s")
        for name, value in parts.items():
            out[name] = out.get(name, 0.0) + value
    if padded is not None:
        out["token_permutation"] = permutation_s(wl, padded, hw)
    return out, passes


def permutation_s(wl: Workload, padded: tuple[int, int], hw: Profile) -> float:
    """NATTEN token permutation: copy Q, K, V into the tiled layout (padding to tile multiples)
    and O back, reading and writing every element once; one kernel per tensor. The backward
    permutes dO in and dQ, dK, dV out (and Q, K, V, O again when run on its own)."""
    q_pad, kv_pad = padded  # tokens per problem in the permuted (padded) layout
    b, e, eo = wl.batch, wl.element_bytes, wl.output_bytes
    q = b * wl.q_heads * (wl.q_len + q_pad) * wl.qk_head_dim * e
    k = b * wl.kv_heads * (wl.kv_len + kv_pad) * wl.qk_head_dim * e
    v = b * wl.kv_heads * (wl.kv_len + kv_pad) * wl.v_head_dim * e
    o = b * wl.q_heads * (wl.q_len + q_pad) * wl.v_head_dim * eo
    # Forward: Q, K, V in, O out. Any backward adds dO in and dQ, dK, dV out (same sizes).
    total, kernels = (q + k + v + o, 4) if wl.phase in ("fwd", "decode") else (2 * (q + k + v + o), 8)
    return total / hw.get("memory_bw_bytes_per_s") + kernels * hw.get("launch_overhead_s")


def tile_time(counts: Counts, hw: Profile, padded: tuple[int, int] | None = None) -> TileTime:
    """Tile-level time of ``counts`` (which must carry tile counts) on a GPU profile.
    ``padded``: query and key tokens in NATTEN's permuted layout, or None when the kernel
    reads the tokens in place (1D blocks, FlexAttention)."""
    wl = counts.workload
    breakdown, passes = tile_breakdown(wl, counts.tiles, counts.bytes, hw, padded)
    slots = rates(hw, wl.dtype).slots
    notes = ASSUMPTIONS
    if wl.phase == "decode":
        notes += ("decode: split-KV (FlashDecoding) so that (head, Q tile) x splits fills the SM "
                  "slots, plus one combine kernel",)
    return TileTime(breakdown, {k: p.pipe for k, p in passes.items()}, {k: p.unit.as_dict() for k, p in passes.items()},
                    {k: p.ctas for k, p in passes.items()}, {k: p.ctas / slots for k, p in passes.items()}, notes)
