"""Per-kernel work models and a linear, calibratable time model (CPU kernels).

A real kernel does more work than the pattern's exact pairs: it visits whole tiles (masked
slots included), may materialise the score matrix, and parallelises over (batch, head, query
tile) items only. Each known kernel is described by the tiling it visits and whether it writes
the scores; its time is

    t = c_call + share · (c_mm·matmul + c_exp·exp + c_mask·masked_slots + c_byte·bytes
                          + c_tile·tiles + c_sc·stream_cache_bytes + c_sd·stream_dram_bytes)

with every work term an exact count under the kernel's tiling (``stream_*_bytes``: data re-read
while the kernel runs — the K/V each visited tile of a fused kernel streams, dominant in
decode's matrix-vector products, or an unfused kernel's passes over its score matrix — from
cache while that working set fits in the last-level cache, from DRAM beyond) and
``share`` the busiest thread's share of the work under the kernel's static split of its
(batch, head, query tile) items into contiguous per-thread chunks (at::parallel_for), so one
causal head on two threads costs 3/4, not 1/2, of the total. Coefficients are seconds per unit. Uncalibrated
coefficients come from the profile's measured peaks; ``attnsim calibrate`` fits them per
(hardware, kernel) on measurements (:mod:`attnsim.validate.calibrate`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..counting import count
from ..errors import AttnsimError
from ..patterns import Dense, Pattern
from ..tiles import Tiling, TilingRequest, dim_rows
from ..workload import Workload
from .profile import Profile

FEATURES = ("call", "matmul_flops", "narrow_matmul_flops", "exp", "masked_slots", "bytes", "tiles",
            "stream_cache_bytes", "stream_dram_bytes", "fresh_bytes")
# glibc serves allocations from this size up with a fresh mmap (DEFAULT_MMAP_THRESHOLD_MAX on
# 64-bit; the dynamic threshold never exceeds it), so every call first-touches those pages again:
# a page fault per 4 KiB, slower than streaming the same bytes.
MMAP_THRESHOLD_BYTES = 32 << 20
NARROW_Q_ROWS = 128  # fewer query rows per tile: the matmuls run at a lower rate (less operand reuse)
LLC_SHARE = 0.5      # K/V "fit" in the last-level cache up to half of it (Q, O, buffers share it)
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
    KernelModel("flex-topk", False, "block-sparse"),  # routing + BlockMask + flex (attnsim.validate)
)}


def kernel_model(name: str) -> KernelModel:
    if name not in KERNELS:
        from .opgraphcost import KERNELS as OPGRAPH_KERNELS

        raise AttnsimError(f"--kernel {name!r}: use one of {', '.join([*KERNELS, *OPGRAPH_KERNELS])}")
    return KERNELS[name]


def kernel_refusal(kernel: str, wl: Workload, pattern: Pattern) -> str | None:
    """Why ``kernel``'s work model cannot price ``pattern`` (None: it can); unknown names raise."""
    from .opgraphcost import KERNELS as OPGRAPH_KERNELS, refusal

    if kernel in OPGRAPH_KERNELS:  # naive multi-op runners: priced from the pattern's op graph
        return refusal(kernel, wl, pattern)
    kernel_model(kernel)
    if not pattern.tileable or pattern.op_graph(wl, 1) is not None:
        naive = [k for k in OPGRAPH_KERNELS if refusal(k, wl, pattern) is None]
        hint = f"use --kernel {naive[0]}" if naive else "drop --kernel"
        return (f"--kernel {kernel} prices single fused mask kernels; {pattern.name} is data-dependent or "
                f"several ops: {hint}")
    return None


def features(wl: Workload, pattern: Pattern, kernel: str, hw: Profile) -> dict[str, float]:
    """Work of the busiest thread in one call of ``kernel`` (exact counts under its tiling; the
    naive multi-op kernels: from the op graph, hwmodels.opgraphcost)."""
    from .opgraphcost import KERNELS as OPGRAPH_KERNELS, features as opgraph_features

    if kernel in OPGRAPH_KERNELS:
        return opgraph_features(wl, pattern, kernel, hw)
    km = kernel_model(kernel)
    tiling = km.tiling(wl, pattern, hw)
    c = count(wl, pattern, tiling)
    t, heads = c.tiles, c.workload.heads_total
    slots_per_tile = math.prod(tiling.q_tile) * math.prod(tiling.kv_tile)
    w = c.workload
    if km.materialises_scores:  # every (query, key) slot is computed, masked or not
        matmul, exp = count(wl, Dense()).flops.matmul, wl.q_len * wl.kv_len * heads
        streamed = c.bytes.unfused - c.bytes.compulsory + gqa_expansion_bytes(w)
        in_cache = fits_in_cache(heads * wl.q_len * wl.kv_len * w.element_bytes, hw)  # the score matrix
        fresh = fresh_bytes(w)
    else:
        matmul, exp = c.flops.executed, t.visited_pairs * heads
        streamed = t.visited * heads * math.prod(tiling.kv_tile) * (w.qk_head_dim + w.v_head_dim) * w.element_bytes
        in_cache = fits_in_cache(w.batch * w.kv_heads * w.kv_len * (w.qk_head_dim + w.v_head_dim) * w.element_bytes, hw)
        fresh = 0
    nbytes = c.bytes.compulsory
    narrow = math.prod(tiling.q_tile) < NARROW_Q_ROWS
    totals = {"matmul_flops": 0 if narrow else matmul, "narrow_matmul_flops": matmul if narrow else 0,
              "exp": exp, "masked_slots": t.masked * heads * slots_per_tile,
              "bytes": nbytes, "tiles": t.visited * heads,
              "stream_cache_bytes": streamed if in_cache else 0, "stream_dram_bytes": 0 if in_cache else streamed,
              "fresh_bytes": fresh}
    share = busiest_share(wl, pattern, tiling, heads, hw)
    return {"call": 1.0, **{k: v * share for k, v in totals.items()}}


def fits_in_cache(working_set_bytes: int, hw: Profile) -> bool:
    """Whether data re-read during the call (a fused kernel's K/V, an unfused one's scores) stays
    in the last-level cache; beyond it every re-read comes from DRAM again (decode with a long
    KV cache, unfused attention on long sequences)."""
    if "l3_bytes" not in hw.fields:
        return True
    return working_set_bytes <= LLC_SHARE * hw.get("l3_bytes")


def fresh_bytes(wl: Workload) -> int:
    """Bytes of an unfused call's temporaries large enough to be freshly mapped each call: the
    scores S and probabilities P, and with GQA the K and V repeated to every query head."""
    scores = wl.heads_total * wl.q_len * wl.kv_len * wl.element_bytes
    expanded = wl.batch * wl.q_heads * wl.kv_len * wl.element_bytes
    temporaries = [scores, scores]
    if wl.q_heads != wl.kv_heads:
        temporaries += [expanded * wl.qk_head_dim, expanded * wl.v_head_dim]
    return sum(t for t in temporaries if t >= MMAP_THRESHOLD_BYTES)


def gqa_expansion_bytes(wl: Workload) -> int:
    """Unfused GQA repeats K and V to every query head (written, then read)."""
    if wl.q_heads == wl.kv_heads:
        return 0
    return 2 * wl.batch * wl.q_heads * wl.kv_len * (wl.qk_head_dim + wl.v_head_dim) * wl.element_bytes


def q_tile_work(wl: Workload, pattern: Pattern, tiling: Tiling) -> np.ndarray:
    """Visited KV tiles of each Q tile of one (batch, head) problem, in the kernel's order (1D
    tiles); box tiles of a grid: their histogram expanded (order unknown)."""
    if len(tiling.q_tile) == 1:
        if pattern.edge_tiled:
            rows = pattern.tile_rows(wl, tiling.q_tile[0], tiling.kv_tile[0])
        else:
            per_dim = dim_rows(pattern.tile_layout(wl), tiling)
            rows = per_dim[0] if len(per_dim) == 1 else None
        if rows is not None:
            return rows[:, 1] if tiling.policy == "block-sparse" else rows[:, 0]
    work = count(wl, pattern, tiling).tiles.work
    return np.repeat(work.visited, work.count)


def busiest_share(wl: Workload, pattern: Pattern, tiling: Tiling, problems: int, hw: Profile) -> float:
    """The busiest thread's share of the work when (problem, Q tile) items are split into one
    contiguous chunk per thread (OpenMP static schedule, as at::parallel_for); 1 on GPUs."""
    if hw.kind != "cpu":
        return 1.0
    threads = int(hw.get("compute_units"))
    work = np.tile(q_tile_work(wl, pattern, tiling).astype(float), problems)
    total = work.sum()
    if total == 0:
        return 1.0 / threads
    chunk = -(-len(work) // threads)
    return max(work[i:i + chunk].sum() for i in range(0, len(work), chunk)) / total


def default_coefficients(hw: Profile, dtype: str) -> dict[str, float]:
    """Uncalibrated seconds per unit of the busiest thread's work, from the profile's device-wide
    peaks divided among its cores."""
    units = hw.get("compute_units") if hw.kind == "cpu" else 1
    peak = units / hw.matmul_peak(dtype)
    return {"call": hw.get("launch_overhead_s"), "matmul_flops": peak, "narrow_matmul_flops": peak,
            "exp": units / hw.get("exp_per_s"), "masked_slots": 0.0,
            "bytes": units / hw.get("memory_bw_bytes_per_s"), "tiles": 0.0, "stream_cache_bytes": 0.0,
            "stream_dram_bytes": units / hw.get("memory_bw_bytes_per_s"), "fresh_bytes": 0.0}


def kernel_time_s(feats: dict[str, float], coefficients: dict[str, float]) -> float:
    return sum(coefficients[k] * feats[k] for k in FEATURES)


DEFAULT_KERNEL = {"dense": "sdpa-flash", "causal": "sdpa-flash", "neighborhood": "natten", "block-topk": "flex-topk",
                  "linear": "naive-linear", "lowrank": "naive-lowrank", "agent": "naive-agent", "moba": "naive-moba"}


def default_kernel(pattern: Pattern, hw: Profile | None = None) -> str:
    """The kernel a user would run the pattern with: SDPA for dense/causal, NATTEN for
    neighborhood (FlexAttention on CPUs, where NATTEN only runs it eagerly), the naive torch
    runners for linear, low-rank, agent and MoBA, FlexAttention for other masks."""
    if pattern.name == "neighborhood" and hw is not None and hw.kind == "cpu":
        return "flex"
    return DEFAULT_KERNEL.get(pattern.name, "flex")


__all__ = ["FEATURES", "KERNELS", "KernelModel", "features", "default_coefficients", "kernel_time_s",
           "default_kernel", "kernel_model", "kernel_refusal"]
