"""Roofline pricing: time = max over roofs, each roof = work / peak rate of the unit doing it."""
from __future__ import annotations

from dataclasses import dataclass

from attnsim.counting import Counts
from attnsim.errors import PricingError

from .profile import Profile

# Kernels launched per phase (FlashAttention-2: the backward runs a delta = rowsum(dO*O)
# pre-pass, the main kernel and a dQ fp32->dtype conversion).
KERNELS_PER_PHASE = {"fwd": 1, "decode": 1, "bwd": 3, "fwd+bwd": 4}


@dataclass(frozen=True)
class Roofline:
    roofs_s: dict[str, float]  # roof name -> time if only that roof limited
    bound_by: str
    time_s: float
    assumptions: tuple[str, ...]


def roofs(counts: Counts, hw: Profile) -> tuple[dict[str, float], list[str]]:
    """Per-roof times for ``counts`` on ``hw`` and the assumptions they rest on."""
    if hw.kind not in ("gpu", "cpu"):
        raise PricingError(f"no roofline model for kind {hw.kind!r} yet")
    f = counts.flops
    out = roof_times(hw, counts.workload.dtype, f.matmul, f.exp, f.softmax_other, counts.bytes.compulsory)
    notes = [f"matmul at the dense {counts.workload.dtype} peak of {hw.name}",
             "memory roof: compulsory bytes at peak DRAM/HBM bandwidth (perfect reuse on chip)",
             "exp on the special-function units, other softmax work on FP32 cores, tensor cores, "
             "SFUs and memory overlap perfectly" if hw.kind == "gpu" else
             "CPU: exp and other softmax work share the vector units; compute and memory overlap perfectly"]
    return out, notes


def roof_times(hw: Profile, dtype: str, matmul_flops: int, exp: int, other_flops: int,
               compulsory_bytes: int) -> dict[str, float]:
    """Seconds per roof (GPU or CPU profile)."""
    matmul_s = matmul_flops / hw.matmul_peak(dtype)
    exp_s = exp / hw.get("exp_per_s")
    other_s = other_flops / hw.get("vector_flops_per_s")
    memory_s = compulsory_bytes / hw.get("memory_bw_bytes_per_s")
    if hw.kind == "gpu":
        # exp runs on the SFU (MUFU), the rest of softmax on the FP32 pipes: separate roofs.
        return {"matmul": matmul_s, "exp": exp_s, "softmax": other_s, "memory": memory_s}
    # A CPU evaluates exp with vector instructions on the same units as the other work.
    return {"matmul": matmul_s, "softmax": exp_s + other_s, "memory": memory_s}


def roofline(counts: Counts, hw: Profile) -> Roofline:
    times, notes = roofs(counts, hw)
    bound_by = max(times, key=times.get)
    return Roofline(times, bound_by, times[bound_by], tuple(notes))


def launch_time_s(counts: Counts, hw: Profile) -> float:
    return KERNELS_PER_PHASE[counts.workload.phase] * hw.get("launch_overhead_s")
