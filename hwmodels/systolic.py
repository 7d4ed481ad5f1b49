"""Systolic-array (TPU-like) time for attention: matmuls tiled onto R x C weight-stationary
arrays, softmax on the vector unit, K/V tiles streamed from HBM.

The kernel modelled is the Pallas TPU flash/splash attention (jax.experimental.pallas.ops.tpu):
a grid (batch, head, Q tile, KV tile) whose leading dimensions are split over the chip's
cores and whose KV steps run in order. One grid step (one visited tile) computes S = Q Kᵀ on
the MXUs, the online softmax on the vector unit (exp on its transcendental unit), and
O += P V on the MXUs; the backward runs splash's two kernels (dK/dV, then dQ), each
recomputing S and P. Per matmul, each R x C tile of the stationary operand is one pass that
streams the other operand's rows one per cycle (contraction down the R rows, outputs across
the C columns; head dims that are not multiples of the array pad it), passes go to the
core's MXUs in rounds, and every round pays a fixed fill/drain. The stages of a step depend
on each other (S drains before softmax, P feeds PV), so a step costs their sum; only the K/V
DMAs overlap with compute (double-buffered), so a kernel costs max(compute, HBM) and HBM time
beyond compute is the exposed "hbm" stage. Patterns without tile counts (data-dependent,
multi-op) are priced from op-level FLOPs with the head-dim padding, at the array's peak.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from attnsim.counting import BWD_SOFTMAX_OPS_PER_PAIR, FWD_SOFTMAX_OPS_PER_PAIR, LSE_BYTES, Counts
from attnsim.errors import PricingError

from .energy import energy_j
from .profile import Profile
from .roofline import KERNELS_PER_PHASE
from .scheduling import lpt_makespan
from .targets import TargetTime

# Kernels per phase (splash attention's default unfused backward: a dK/dV and a dQ kernel).
KERNEL_PASSES = {"fwd": ("fwd",), "decode": ("fwd",), "bwd": ("dkv", "dq"), "fwd+bwd": ("fwd", "dkv", "dq")}
COMPUTE_STAGES = ("mxu", "fill/drain", "vector (softmax/exp)", "masking", "grid steps")
# Every breakdown has all stages (zeros included): a pattern and its baseline compare stage by
# stage even when one is priced per tile and the other per op.
STAGES = COMPUTE_STAGES + ("core imbalance", "hbm (exposed)", "launch")
ASSUMPTIONS = (
    "systolic model: Pallas TPU flash/splash attention, one grid step per visited tile; per "
    "matmul, each R x C tile of the stationary operand is a pass streaming the other operand's "
    "rows one per cycle, passes run on the core's MXUs in rounds (rows split over MXUs when "
    "there are fewer passes than MXUs), each round pays the profile's fill/drain cycles",
    "stages of a grid step run one after another (S must drain before the softmax, P feeds "
    "PV), so a step costs MXU + fill/drain + vector (max of exp unit and vector ALUs) + masking "
    "+ grid-step overhead; K/V DMAs are double-buffered, so a kernel costs max(compute, HBM); "
    "kernels run one after another, one launch each",
    "HBM traffic: K and V tiles are re-read for every visited (Q tile, head) step (no reuse "
    "across Q tiles or GQA heads), Q/O once per Q tile; the backward's dK/dV kernel is priced "
    "with the forward's per-Q-tile work distribution",
)


@dataclass(frozen=True)
class Array:
    """A systolic target's per-core rates, in cycles."""

    rows: int
    cols: int
    mxus: int
    cores: int
    clock_hz: float
    fill_drain: float
    step_overhead: float
    valu_per_cycle: float   # vector ALU ops per cycle per core
    exp_per_cycle: float    # exponentials per cycle per core
    mask_ops: float
    vmem_bytes: float
    dtype_factor: float     # passes per row for dtypes slower than the array's native one

    @classmethod
    def of(cls, hw: Profile, dtype: str) -> "Array":
        cores, clock = round(hw.get("compute_units")), hw.get("clock_hz")
        native = max(q.value_si for q in hw.matmul.values())
        return cls(round(hw.get("mxu_rows")), round(hw.get("mxu_cols")), round(hw.get("mxus_per_core")),
                   cores, clock, hw.get("mxu_fill_drain_cycles"), hw.get("grid_step_overhead_cycles"),
                   hw.get("vector_flops_per_s") / (cores * clock), hw.get("exp_per_s") / (cores * clock),
                   hw.get("vector_ops_per_masked_score"), hw.get("vmem_bytes_per_core"),
                   native / hw.matmul_peak(dtype))

    @property
    def macs_per_cycle(self) -> int:
        """Multiply-accumulates per cycle of one core, every MXU busy."""
        return self.rows * self.cols * self.mxus


def matmul_cycles(m: int, k: int, n: int, arr: Array) -> tuple[float, float]:
    """(streaming, fill/drain) cycles of one (m x k) @ (k x n) matmul on one core.

    ceil(k/R) x ceil(n/C) passes; with the rows split into g groups (g MXUs holding copies of
    the same weights), a round runs up to ``mxus`` (pass, group) jobs, each streaming
    ceil(m/g) rows and paying one fill/drain; the compiler's split is the fastest g."""
    passes = -(-k // arr.rows) * -(-n // arr.cols)
    best = None
    for g in range(1, arr.mxus + 1):
        rounds = -(-passes * g // arr.mxus)
        cost = (rounds * -(-m // g) * arr.dtype_factor, rounds * arr.fill_drain)
        if best is None or sum(cost) < sum(best):
            best = cost
    return best


def step_matmuls(kernel: str, bq: int, bk: int, dqk: int, dv: int) -> list[tuple[int, int, int]]:
    """(rows streamed, contraction, output columns) of each matmul of one grid step, in the
    operand order of the Pallas kernels (the second operand is the stationary one)."""
    s, dp = (bq, dqk, bk), (bq, dv, bk)  # S = Q Kᵀ, dP = dO Vᵀ
    return {"fwd": [s, (bq, bk, dv)],                       # O += P V
            "dkv": [s, dp, (bk, bq, dv), (bk, bq, dqk)],    # dV += Pᵀ dO, dK += dSᵀ Q
            "dq": [s, dp, (bq, bk, dqk)]}[kernel]           # dQ += dS K


@dataclass(frozen=True)
class Step:
    """Cycles of one grid step (one visited tile) of one kernel, on one core."""

    mxu: float
    fill_drain: float
    vector: float
    masking: float      # extra, on partially masked tiles only
    overhead: float
    macs: int           # multiply-accumulates the step's matmuls need (no padding)

    @property
    def unmasked(self) -> float:
        return self.mxu + self.fill_drain + self.vector + self.overhead


def step_cycles(kernel: str, bq: int, bk: int, dqk: int, dv: int, arr: Array) -> Step:
    shapes = step_matmuls(kernel, bq, bk, dqk, dv)
    stream, fill = (sum(c) for c in zip(*(matmul_cycles(*s, arr) for s in shapes)))
    scores = bq * bk
    ops = scores * FWD_SOFTMAX_OPS_PER_PAIR + bq * dv if kernel == "fwd" else scores * BWD_SOFTMAX_OPS_PER_PAIR
    # Exp unit and vector ALUs issue in the same VLIW bundles: the slower one paces the softmax.
    vector = max(scores / arr.exp_per_cycle, ops / arr.valu_per_cycle)
    return Step(stream, fill, vector, scores * arr.mask_ops / arr.valu_per_cycle, arr.step_overhead,
                sum(m * k * n for m, k, n in shapes))


def vmem_bytes(kernel: str, bq: int, bk: int, dqk: int, dv: int, e: int, eo: int) -> int:
    """VMEM one grid step needs: double-buffered input/output blocks, f32 accumulators and the
    f32 score tiles (S, P; plus dP, dS in the backward)."""
    kv = bk * (dqk + dv) * e
    if kernel == "fwd":
        blocks, acc, tiles = bq * dqk * e + kv + bq * dv * eo, bq * (dv + 2) * 4, 2
    elif kernel == "dkv":  # Q, dO, LSE, delta in; K, V in; dK, dV out
        blocks, acc, tiles = bq * (dqk + dv) * e + 2 * bq * LSE_BYTES + 2 * kv, bk * (dqk + dv) * 4, 4
    else:  # dq: Q, dO, LSE, delta, K, V in; dQ out
        blocks, acc, tiles = bq * (dqk + dv) * e + 2 * bq * LSE_BYTES + kv + bq * dqk * e, bq * dqk * 4, 4
    return 2 * blocks + acc + tiles * bq * bk * 4


def hbm_bytes(kernel: str, counts: Counts, bq: int, bk: int) -> int:
    """HBM bytes one kernel moves: per visited step the streamed blocks, per Q (or KV) tile
    the blocks loaded or stored once."""
    wl, t = counts.workload, counts.tiles
    dqk, dv, e, eo, heads = wl.qk_head_dim, wl.v_head_dim, wl.element_bytes, wl.output_bytes, wl.heads_total
    kv_tiles = t.total // t.q_tiles
    if kernel == "fwd":
        lse = bq * LSE_BYTES if wl.phase == "fwd+bwd" else 0  # the forward saves LSE for the backward
        per_step, per_tile, tiles = bk * (dqk + dv) * e, bq * (dqk * e + dv * eo) + lse, t.q_tiles
    elif kernel == "dkv":
        per_step, per_tile, tiles = bq * (dqk + dv) * e + 2 * bq * LSE_BYTES, 2 * bk * (dqk + dv) * e, kv_tiles
    else:
        per_step, per_tile, tiles = bk * (dqk + dv) * e, bq * (2 * dqk + dv) * e + 2 * bq * LSE_BYTES, t.q_tiles
    return heads * (t.visited * per_step + tiles * per_tile)


def delta_prepass_bytes(counts: Counts) -> int:
    """The backward's delta = rowsum(dO * O) (an XLA fusion before the kernels): read O and dO,
    write delta."""
    wl = counts.workload
    return wl.heads_total * wl.q_len * (2 * wl.v_head_dim * wl.output_bytes + LSE_BYTES)


@dataclass(frozen=True)
class KernelTime:
    stages_s: dict[str, float]  # compute stages, summed over cores' work / cores
    makespan_s: float
    hbm_s: float
    macs: int                   # needed MACs of all visited steps


def kernel_time(kernel: str, counts: Counts, hw: Profile, arr: Array) -> KernelTime:
    wl, t = counts.workload, counts.tiles
    bq, bk = math.prod(t.q_tile), math.prod(t.kv_tile)
    need = vmem_bytes(kernel, bq, bk, wl.qk_head_dim, wl.v_head_dim, wl.element_bytes, wl.output_bytes)
    if need > arr.vmem_bytes:
        raise PricingError(
            f"{hw.name}: a {kernel} grid step with {bq}x{bk} tiles and head dims {wl.qk_head_dim}/"
            f"{wl.v_head_dim} needs {need / 2**20:.1f} MiB of VMEM, the core has "
            f"{arr.vmem_bytes / 2**20:.0f} MiB: use smaller --q-tile/--kv-tile")
    step = step_cycles(kernel, bq, bk, wl.qk_head_dim, wl.v_head_dim, arr)
    heads, cycle_s, work = wl.heads_total, 1.0 / arr.clock_hz, t.work
    durations = (work.visited * step.unmasked + work.masked * step.masking) * cycle_s
    makespan = lpt_makespan(durations, work.count * heads, arr.cores)
    visited, masked = t.visited * heads * cycle_s / arr.cores, t.masked * heads * cycle_s / arr.cores
    stages = {"mxu": visited * step.mxu, "fill/drain": visited * step.fill_drain,
              "vector (softmax/exp)": visited * step.vector, "masking": masked * step.masking,
              "grid steps": visited * step.overhead}
    extra = delta_prepass_bytes(counts) if kernel == "dkv" else 0
    hbm_s = (hbm_bytes(kernel, counts, bq, bk) + extra) / hw.get("memory_bw_bytes_per_s")
    return KernelTime(stages, makespan, hbm_s, t.visited * heads * step.macs)


def _tile_level(counts: Counts, hw: Profile, arr: Array) -> tuple[dict[str, float], float, float, list[str]]:
    """Breakdown, compute and HBM seconds of a single fused kernel with tile counts."""
    out = dict.fromkeys(STAGES, 0.0)
    compute = hbm = 0.0
    macs = 0
    for kernel in KERNEL_PASSES[counts.workload.phase]:
        kt = kernel_time(kernel, counts, hw, arr)
        for name, value in kt.stages_s.items():
            out[name] += value
        gap = kt.makespan_s - sum(kt.stages_s.values())
        out["core imbalance"] += gap if gap > 1e-9 * kt.makespan_s else 0.0  # not float noise
        out["hbm (exposed)"] += max(0.0, kt.hbm_s - kt.makespan_s)
        compute, hbm, macs = compute + kt.makespan_s, hbm + kt.hbm_s, macs + kt.macs
    t, stream = counts.tiles, out["mxu"]
    util = macs / (stream * arr.clock_hz * arr.cores * arr.macs_per_cycle) if stream else 0.0
    notes = [f"{hw.name}: {'x'.join(map(str, t.q_tile))} x {'x'.join(map(str, t.kv_tile))} tiles on "
             f"{arr.cores} core(s) x {arr.mxus} MXUs of {arr.rows}x{arr.cols}; MXU utilisation while "
             f"streaming {util:.0%} (head dims or tiles that are not multiples of the array pad it)"]
    return out, compute, hbm, notes


def _op_level(counts: Counts, hw: Profile, arr: Array) -> tuple[dict[str, float], float, float, list[str]]:
    """No tile counts (data-dependent or multi-op patterns): op FLOPs at the array peak with the
    head dims padded to the array (QK side on its rows, PV side on its columns)."""
    wl, f = counts.workload, counts.flops
    pad_qk = -(-wl.qk_head_dim // arr.rows) * arr.rows / wl.qk_head_dim
    pad_pv = -(-wl.v_head_dim // arr.cols) * arr.cols / wl.v_head_dim
    peak_macs = arr.macs_per_cycle * arr.cores * arr.clock_hz / arr.dtype_factor
    mxu = (f.qk * pad_qk + f.pv * pad_pv) / 2 / peak_macs
    vector = max(f.exp / hw.get("exp_per_s"), f.softmax_other / hw.get("vector_flops_per_s"))
    hbm = counts.bytes.compulsory / hw.get("memory_bw_bytes_per_s")
    out = dict.fromkeys(STAGES, 0.0) | {"mxu": mxu, "vector (softmax/exp)": vector,
                                        "hbm (exposed)": max(0.0, hbm - mxu - vector)}
    notes = ["systolic op-level model (no tile counts): matmul FLOPs at the MXU peak with head dims "
             "padded to the array, no fill/drain or grid-step terms (tile shapes unknown), compulsory "
             "HBM bytes (perfect on-chip reuse): optimistic; non-attention matmuls of multi-op patterns "
             "get the same head-dim padding"]
    return out, mxu + vector, hbm, notes


def _bound_by(breakdown: dict[str, float], compute_s: float, hbm_s: float) -> str:
    if hbm_s > compute_s:
        return "hbm"
    compute = {k: v for k, v in breakdown.items() if k in COMPUTE_STAGES}
    return max(compute, key=compute.get)


def price_systolic(counts: Counts, hw: Profile) -> TargetTime:
    """Time by stage (adding up to the prediction), energy and assumptions of ``counts`` on a
    ``kind: systolic`` profile."""
    arr = Array.of(hw, counts.workload.dtype)
    tiled = counts.tiles is not None and counts.kernels is None
    breakdown, compute, hbm, notes = (_tile_level if tiled else _op_level)(counts, hw, arr)
    launches = len(counts.kernels) if counts.kernels else KERNELS_PER_PHASE[counts.workload.phase]
    breakdown["launch"] = launches * hw.get("launch_overhead_s")
    joules, energy_note = energy_j(counts, hw, sum(breakdown.values()))
    assumptions = (ASSUMPTIONS if tiled else ()) + tuple(notes) + ((energy_note,) if energy_note else ())
    return TargetTime(breakdown, joules, assumptions, _bound_by(breakdown, compute, hbm))
