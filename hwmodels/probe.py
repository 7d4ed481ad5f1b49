"""Measure this CPU with numpy (torch-free) and write a ``kind: cpu`` profile.

Each rate is the best of several timed repeats after a warm-up, so it approximates what a
tuned library reaches, not a vendor peak. Every number's ``source`` says how it was measured.
"""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

import numpy as np

REPEATS = 5


def _best_time_s(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    fn()  # warm-up: page faults, BLAS thread start-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_fp32_flops_per_s(n: int = 2048) -> float:
    a, b = np.ones((n, n), np.float32), np.ones((n, n), np.float32)
    return 2 * n**3 / _best_time_s(lambda: a @ b)


def exp_fp32_per_s(n: int = 1 << 22) -> float:
    x, out = np.linspace(-4, 0, n, dtype=np.float32), np.empty(n, np.float32)
    return n / _best_time_s(lambda: np.exp(x, out=out))


def vector_fp32_flops_per_s(n: int = 16384, inner: int = 1000) -> float:
    # Cache-resident operands (3 x 64 KiB), so this is the arithmetic rate, not DRAM bandwidth.
    a, b, c = (np.full(n, 1.0001, np.float32) for _ in range(3))

    def run() -> None:
        for _ in range(inner):
            np.multiply(a, b, out=c)

    return n * inner / _best_time_s(run)


def copy_bytes_per_s(size_bytes: int = 1 << 29) -> float:
    src = np.ones(size_bytes // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * size_bytes / _best_time_s(lambda: np.copyto(dst, src))  # read + write


def call_overhead_s(inner: int = 20000) -> float:
    a = np.ones((4, 4), np.float32)

    def run() -> None:
        for _ in range(inner):
            a @ a

    return _best_time_s(run) / inner


def _cache_kib(level: int, data: bool) -> float | None:
    """Cache size from sysfs (cpu0), e.g. level 1 data cache; None if not exposed."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(root)):
            path = os.path.join(root, entry)
            with open(f"{path}/level") as fh_level, open(f"{path}/type") as fh_type:
                kind = fh_type.read().strip()
                if int(fh_level.read()) == level and kind in (("Data", "Unified") if data else ("Unified",)):
                    with open(f"{path}/size") as fh:
                        return float(fh.read().strip().rstrip("K"))
    except (OSError, ValueError):
        pass
    return None


def _cpuinfo(key: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def probe(name: str) -> dict:
    """A profile mapping (ready for yaml.safe_dump) measured on this machine."""
    cores = os.cpu_count() or 1
    where = f"on {cpu_model()}, {cores} threads, numpy {np.__version__}, best of {REPEATS}"

    def q(value: float, unit: str, how: str) -> dict:
        return {"value": float(f"{value:.4g}"), "unit": unit, "source": f"measured: {how} {where}"}

    prof = {
        "schema_version": 1, "name": name, "kind": "cpu",
        "description": f"{cpu_model()} ({cores} cores), probed by attnsim hw probe",
        "matmul_flops_per_s": {"fp32": q(matmul_fp32_flops_per_s() / 1e9, "GFLOP/s",
                                         "numpy float32 2048^3 matmul (BLAS sgemm)")},
        # numpy runs element-wise ops on one thread: the device rate is the per-thread rate x cores
        "vector_flops_per_s": q(cores * vector_fp32_flops_per_s() / 1e9, "GFLOP/s",
                                f"{cores} cores x numpy float32 multiply on cache-resident 16384-element arrays, "
                                "1 FLOP/element, single thread"),
        "exp_per_s": q(cores * exp_fp32_per_s() / 1e9, "Gop/s",
                       f"{cores} cores x numpy float32 exp over 4M elements, single thread"),
        "memory_bw_bytes_per_s": q(copy_bytes_per_s() / 1e9, "GB/s",
                                   "numpy copy of 512 MiB float32, read + write bytes counted"),
        "memory_size_bytes": {"value": float(f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.4g}"),
                              "unit": "GiB", "source": "measured: sysconf SC_PHYS_PAGES x SC_PAGE_SIZE"},
        "compute_units": {"value": cores, "unit": "count", "source": "measured: os.cpu_count()"},
        "launch_overhead_s": q(call_overhead_s() * 1e6, "us", "numpy 4x4 matmul call time (per-op dispatch)"),
    }
    mhz = _cpuinfo("cpu MHz")
    if mhz:
        prof["clock_hz"] = {"value": float(mhz), "unit": "MHz",
                            "source": "measured: /proc/cpuinfo 'cpu MHz' (nominal, as the OS reports it)"}
    for field, level, data in (("l1d_bytes_per_core", 1, True), ("l2_bytes_per_core", 2, False),
                               ("l3_bytes", 3, False)):
        size = _cache_kib(level, data)
        if size:
            prof[field] = {"value": size, "unit": "KiB",
                           "source": f"measured: /sys/devices/system/cpu/cpu0/cache (level {level})"}
    return prof
