"""Per-kernel work models and a linear, calibratable time model (CPU kernels).

A real kernel does more work than the pattern's exact pairs: it visits whole tiles (masked
slots included), may materialise the score matrix, and parallelises over (batch, head, query
tile) items only. Each known kernel is described by the tiling it visits and whether it writes
the scores; its time is

    t = c_call + (c_mm·matmul + c_exp·exp + c_byte·bytes + c_tile·tiles + c_row·row_tiles) / par

with every work term an exact count under the kernel's tiling, ``par`` the threads that have
an item to work on, and the coefficients seconds per unit per thread. Uncalibrated
coefficients come from the profile's measured peaks; ``attnsim calibrate`` fits them per
(hardware, kernel) on measurements (:mod:`attnsim.validate.calibrate`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..counting import count
from ..errors import AttnsimError
from ..patterns import Dense, Pattern
from ..tiles import Tiling, TilingRequest
from ..workload import Workload
from .profile import Profile

FEATURES = ("call", "matmul_flops", "exp", "bytes", "tiles", "row_tiles")
FLEX_BLOCK = 128
TORCH_CPU_KV_SPLIT = 512  # aten/src/ATen/native/cpu/FlashAttentionKernel.cpp: cpu_flash_attention<.., 512>


def torch_cpu_q_split(q_len: int) -> int:
    """PyTorch's CPU flash attention q split: 256 from 768 queries, 64 from 192, else 32
    (FlashAttentionKernel.cpp, flash_attention_kernel_impl)."""
    return 256 if q_len >= 768 else 64 if q_len >= 192 else 32


@dataclass(frozen=True)
class KernelModel:
    name: str
    materialises_scores: bool  # unfused: writes and re-reads the full q x kv score matrix
    policy: str                # which tiles it visits: block-sparse (skips empty ones) or dense

    def tiling(self, wl: Workload, pattern: Pattern, hw: Profile) -> Tiling:
        if self.name == "sdpa-flash" and hw.kind == "cpu":
            # the kernel clamps both splits to the sequence: no padded slots
            return Tiling((min(torch_cpu_q_split(wl.q_len), wl.q_len),), (min(TORCH_CPU_KV_SPLIT, wl.kv_len),),
                          self.policy)
        if self.materialises_scores:
            return Tiling((FLEX_BLOCK,), (FLEX_BLOCK,), "dense")
        return TilingRequest(policy=self.policy).resolve(wl, pattern, hw)


KERNELS = {k.name: k for k in (
    KernelModel("sdpa-flash", False, "block-sparse"),
    KernelModel("sdpa-efficient", False, "block-sparse"),
    KernelModel("sdpa-math", True, "dense"),
    KernelModel("unfused", True, "dense"),
    KernelModel("flex", False, "block-sparse"),
    KernelModel("natten", False, "block-sparse"),
)}


def kernel_model(name: str) -> KernelModel:
    if name not in KERNELS:
        raise AttnsimError(f"--kernel {name!r}: use one of {', '.join(KERNELS)}")
    return KERNELS[name]


def features(wl: Workload, pattern: Pattern, kernel: str, hw: Profile) -> dict[str, float]:
    """Per-thread work of one call of ``kernel`` (exact counts under its tiling)."""
    km = kernel_model(kernel)
    tiling = km.tiling(wl, pattern, hw)
    c = count(wl, pattern, tiling)
    t, heads = c.tiles, c.workload.heads_total
    if km.materialises_scores:  # every (query, key) slot is computed, masked or not
        matmul, exp, nbytes = count(wl, Dense()).flops.matmul, wl.q_len * wl.kv_len * heads, c.bytes.unfused
    else:
        matmul, exp, nbytes = c.flops.executed, t.visited_pairs * heads, c.bytes.compulsory
    q_tile_tokens = math.prod(tiling.q_tile)
    q_tiles = -(-wl.q_len // q_tile_tokens)
    items = heads * q_tiles  # parallel work items: (batch, head, query tile)
    par = min(hw.get("compute_units"), items) if hw.kind == "cpu" else 1
    tiles = t.visited * heads
    return {"call": 1.0, "matmul_flops": matmul / par, "exp": exp / par, "bytes": nbytes / par,
            "tiles": tiles / par, "row_tiles": tiles * q_tile_tokens / par}


def default_coefficients(hw: Profile, dtype: str) -> dict[str, float]:
    """Uncalibrated seconds per unit per thread, from the profile's measured peaks."""
    units = hw.get("compute_units") if hw.kind == "cpu" else 1
    return {"call": hw.get("launch_overhead_s"), "matmul_flops": units / hw.matmul_peak(dtype),
            "exp": units / hw.get("exp_per_s"), "bytes": units / hw.get("memory_bw_bytes_per_s"),
            "tiles": 0.0, "row_tiles": 0.0}


def kernel_time_s(feats: dict[str, float], coefficients: dict[str, float]) -> float:
    return sum(coefficients[k] * feats[k] for k in FEATURES)


DEFAULT_KERNEL = {"dense": "sdpa-flash", "causal": "sdpa-flash", "neighborhood": "natten"}


def default_kernel(pattern: Pattern) -> str:
    """The kernel a user would run the pattern with: SDPA for dense/causal, NATTEN for
    neighborhood, FlexAttention for other masks."""
    return DEFAULT_KERNEL.get(pattern.name, "flex")


__all__ = ["FEATURES", "KERNELS", "KernelModel", "features", "default_coefficients", "kernel_time_s",
           "default_kernel", "kernel_model"]
