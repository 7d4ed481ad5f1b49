"""An independent, scalar transcription of NATTEN's mask rule (natten 0.21, for tests only).

Transcribed from csrc/include/natten/cuda/fna_blackwell/collective/fna_fusion.hpp
(get_win_start / get_win_end) and csrc/include/natten/cuda/reference/mask.hpp
(qkv_fix_dilation, apply_mask): deliberately written the way the C++ is, not the way
attnsim.patterns.axes is, so the two can disagree if either is wrong.
"""
import itertools

import numpy as np


def qkv_fix_dilation(qkv_shape: int, dilation: int, dilation_group: int) -> int:
    padding = 1 - ((dilation_group + (dilation - (qkv_shape % dilation))) // dilation)
    return (qkv_shape // dilation) + padding


def get_win_start(index, length, window_size, stride, causal):
    window_left = window_size // 2
    window_right = window_size // 2 + (window_size % 2) - 1
    if causal:
        leader = min((index // stride) * stride + stride - 1, length - 1)
        return max(leader - window_left - window_right, 0)
    leader = min(((index // stride) * stride) + (stride // 2), length - 1)
    return max(leader - window_left, 0) + (
        (leader + window_right >= length) * (length - window_right - leader - 1))


def get_win_end(index, start, window_size, length, causal):
    return min(index + 1, length) if causal else start + window_size


def keep_1d(q, kv, length, window, dilation, stride, causal) -> bool:
    if q % dilation != kv % dilation:
        return False
    sub_len = qkv_fix_dilation(length, dilation, q % dilation)
    qi, ki = q // dilation, kv // dilation
    start = get_win_start(qi, sub_len, window, stride, causal)
    end = get_win_end(qi, start, window, sub_len, causal)
    return start <= ki < end


def natten_mask(grid, window, dilation, stride, causal) -> np.ndarray:
    """Boolean (N, N) mask over row-major flattened grid positions."""
    coords = list(itertools.product(*(range(g) for g in grid)))
    n = len(coords)
    out = np.zeros((n, n), dtype=bool)
    for a, qc in enumerate(coords):
        for b, kc in enumerate(coords):
            out[a, b] = all(keep_1d(q, k, *args) for q, k, *args in
                            zip(qc, kc, grid, window, dilation, stride, causal))
    return out
