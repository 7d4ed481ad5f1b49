"""Per-dtype matmul rates measured with torch (``attnsim hw probe`` adds them when torch is
installed: numpy has no bf16 and no BLAS-backed fp16)."""
from __future__ import annotations

import time

DTYPES = ("fp32", "bf16", "fp16")
REPEATS = 5


TARGET_CALL_S = 0.1  # size each timed matmul to about this long (fp16 can be 300x slower than bf16)
MAX_N = 2048


def _best_s(n: int, t) -> float:
    import torch

    a, b = torch.ones(n, n, dtype=t), torch.ones(n, n, dtype=t)
    a @ b  # warm-up: thread pool, oneDNN primitive creation
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_size(dtype: str) -> int:
    """A square size whose matmul takes about TARGET_CALL_S (from a 256^3 trial), multiple of 256."""
    import torch

    t = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    scale = (TARGET_CALL_S / max(_best_s(256, t), 1e-9)) ** (1 / 3)
    return int(min(MAX_N, max(256, 256 * scale // 256 * 256)))


def matmul_flops_per_s(dtype: str, n: int) -> float:
    import torch

    t = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return 2 * n**3 / _best_s(n, t)


def matmul_entries(where: str) -> dict:
    """Profile ``matmul_flops_per_s`` entries for every dtype torch multiplies on this CPU."""
    import torch

    out = {}
    for d in DTYPES:
        n = matmul_size(d)
        out[d] = {"value": float(f"{matmul_flops_per_s(d, n) / 1e9:.4g}"), "unit": "GFLOP/s",
                  "source": f"measured: torch {torch.__version__} {d} {n}^3 matmul {where}, "
                            f"{torch.get_num_threads()} threads, best of {REPEATS}"}
    return out
