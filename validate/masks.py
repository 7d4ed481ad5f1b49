"""The pattern's exact (q_len, kv_len) boolean mask, materialised for the kernels that need one.

Patterns with per-dimension rules are evaluated in row chunks (bounded temporaries, no size
cap beyond the mask itself); others use their own ``mask()``.
"""
from __future__ import annotations

import math

import numpy as np

from attnsim.errors import AttnsimError
from attnsim.patterns import Pattern
from attnsim.workload import Workload

MAX_MASK_BYTES = 2 << 30  # a bool per (query, key): beyond 2 GiB no runner here should need it
ROWS_PER_CHUNK_PAIRS = 1 << 24


def dense_mask(wl: Workload, pattern: Pattern) -> np.ndarray:
    if wl.q_len * wl.kv_len > MAX_MASK_BYTES:
        raise AttnsimError(f"the {wl.q_len}x{wl.kv_len} mask exceeds {MAX_MASK_BYTES >> 30} GiB: "
                           "use a smaller --seq/--tokens for mask-based kernels")
    if pattern.edge_tiled or not pattern.tileable:
        return pattern.mask(wl)
    lay = pattern.layout(wl)
    k_coords = np.unravel_index(np.arange(math.prod(lay.kv_extents)), lay.kv_extents)
    out = np.empty((wl.q_len, wl.kv_len), dtype=bool)
    rows = max(1, ROWS_PER_CHUNK_PAIRS // max(1, wl.kv_len))
    for start in range(0, wl.q_len, rows):
        idx = np.arange(start, min(wl.q_len, start + rows))
        q_coords = np.unravel_index(idx, lay.q_extents)
        block = np.ones((len(idx), wl.kv_len), dtype=bool)
        for rule, qc, kc, lq, lkv in zip(lay.rules, q_coords, k_coords, lay.q_extents, lay.kv_extents):
            block &= rule.keep(qc[:, None], kc[None, :], lq, lkv)
        out[start:start + len(idx)] = block
    return out
