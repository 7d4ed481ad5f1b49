"""Exact tile counts for a tiling of a (workload, pattern) problem, without materialising masks.

A tiling cuts queries and keys into tiles: 1D blocks of the sequence (FlexAttention BlockMask)
or multi-dimensional boxes of the token grid after NATTEN's token permutation, which pads each
dimension to a multiple of ``tile x dilation`` and moves every dilation group into its own
problem. A (Q tile, KV tile) pair is *empty* (no kept pair), *full* (every pair kept, no
padding) or *partial*. Per dimension, every rule keeps a contiguous, monotone window per query
(see attnsim.patterns.axes), so per-dimension counts take O(tiles) numpy work, and box tiles
combine by products: a box is empty if empty in some dimension, full if full in all.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import PatternError
from .patterns.axes import AxisGroup, DenseAxis
from .patterns.base import Pattern
from .workload import Workload

POLICIES = ("block-sparse", "range", "dense")
POLICY_NOTES = {
    "block-sparse": "block-sparse policy: visit non-empty tiles, mask only partial ones "
                    "(FlexAttention BlockMask: kv_indices + full_kv_indices)",
    "range": "range policy: each Q tile visits the KV tiles from its first query's window start "
             "to its last query's window end, masking every visited tile unless all are full "
             "(NATTEN Hopper/Blackwell FNA get_trip_count / is_fully_block_sparse)",
    "dense": "dense policy: visit every tile, mask all unless every tile is full",
}
FLEX_BLOCK = 128  # torch.nn.attention.flex_attention: default BLOCK_SIZE of create_block_mask
# NATTEN 0.21 Hopper FNA forward defaults for head_dim 128 (src/natten/backends/configs/
# cutlass_hopper.py); other archs and head dims differ: pass --q-tile/--kv-tile for them.
NATTEN_HOPPER_D128 = {2: ((16, 8), (16, 8)), 3: ((4, 4, 8), (4, 4, 8))}


@dataclass(frozen=True)
class Tiling:
    q_tile: tuple[int, ...]
    kv_tile: tuple[int, ...]
    policy: str = "block-sparse"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise PatternError(f"policy {self.policy!r} is unknown: use one of {', '.join(POLICIES)}")
        for name in ("q_tile", "kv_tile"):
            tile = tuple(getattr(self, name))
            object.__setattr__(self, name, tile)
            if not tile or any(isinstance(t, bool) or not isinstance(t, int) or t <= 0 for t in tile):
                raise PatternError(f"{name} must be positive integers, got {tile}")
        if len(self.q_tile) != len(self.kv_tile):
            raise PatternError(f"q_tile {self.q_tile} and kv_tile {self.kv_tile} must have the same rank")


def default_tiling(wl: Workload, pattern: Pattern, policy: str | None = None) -> Tiling:
    """FlexAttention's 128x128 blocks for 1D layouts; NATTEN's Hopper d=128 boxes on grids."""
    rank = len(pattern.layout(wl).q_extents)
    if rank == 1:
        return Tiling((FLEX_BLOCK,), (FLEX_BLOCK,), policy or "block-sparse")
    q_tile, kv_tile = NATTEN_HOPPER_D128[rank]
    return Tiling(q_tile, kv_tile, policy or "range")


@dataclass(frozen=True)
class AxisTiles:
    """Per-dimension sums over (Q tile, KV tile) pairs of the same dilation group."""

    total: int
    nonempty: int
    full: int
    range_visited: int
    q_tiles: int


@dataclass(frozen=True)
class TileCounts:
    q_tile: tuple[int, ...]
    kv_tile: tuple[int, ...]
    policy: str
    total: int      # all counts are per (batch, head) problem
    full: int
    partial: int
    empty: int
    visited: int
    masked: int
    q_tiles: int

    @property
    def visited_pairs(self) -> int:
        """(query, key) slots computed in visited tiles, padding and masked-out pairs included."""
        return self.visited * math.prod(self.q_tile) * math.prod(self.kv_tile)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["q_tile"], out["kv_tile"] = "x".join(map(str, self.q_tile)), "x".join(map(str, self.kv_tile))
        return out


def _ceil_div(a, b):
    return -(-a // b)


def _group_tiles(rule, g: AxisGroup, length_q: int, length_kv: int, tq: int, tk: int) -> AxisTiles:
    # NATTEN pads the raw axis to a multiple of tile*dilation, so every group gets
    # ceil(L / (t*d)) tiles; with dilation 1 this is plain padding to a tile multiple.
    nq, nk = _ceil_div(length_q, tq * g.step), _ceil_div(length_kv, tk * g.step)
    first = np.arange(nq, dtype=np.int64) * tq
    # Range policy (NATTEN trip count): corners of the tile, padding included.
    lo_c, _ = rule.bounds(first, g)
    last_corner = first + tq - 1
    _, hi_c = rule.bounds(last_corner, g)
    range_visited = int(np.maximum(_ceil_div(hi_c, tk) - lo_c // tk, 0).sum())
    # Exact classification over valid queries only.
    start, stop = rule.bounds(np.arange(g.q_len, dtype=np.int64), g)
    has_keys = stop > start
    valid_tiles = _ceil_div(g.q_len, tq)
    cuts = first[:valid_tiles]
    big = np.iinfo(np.int64).max
    lo = np.minimum.reduceat(np.where(has_keys, start, big), cuts)
    hi = np.maximum.reduceat(np.where(has_keys, stop, -1), cuts)
    nonempty = np.where(hi > lo, _ceil_div(hi, tk) - lo // tk, 0)
    # Full: a complete Q tile whose queries all keep a whole, padding-free KV tile.
    inner_lo = np.maximum.reduceat(start, cuts)
    inner_hi = np.minimum(np.minimum.reduceat(np.where(has_keys, stop, -1), cuts), (g.kv_len // tk) * tk)
    complete = (cuts + tq <= g.q_len) & np.logical_and.reduceat(has_keys, cuts)
    full = np.where(complete, np.maximum(inner_hi // tk - _ceil_div(inner_lo, tk), 0), 0)
    return AxisTiles(nq * nk, int(nonempty.sum()), int(full.sum()), range_visited, nq)


def axis_tiles(rule, lq: int, lkv: int, tq: int, tk: int) -> AxisTiles:
    parts = [_group_tiles(rule, g, lq, lkv, tq, tk) for g in rule.groups(lq, lkv)]
    return AxisTiles(*(sum(getattr(p, f) for p in parts) for f in AxisTiles.__dataclass_fields__))


def count_tiles(wl: Workload, pattern: Pattern, tiling: Tiling) -> TileCounts:
    """Tile counts per (batch, head) problem; raises PatternError for unusable tilings."""
    lay = pattern.layout(wl)
    rules, q_ext, kv_ext = lay.rules, lay.q_extents, lay.kv_extents
    if len(tiling.q_tile) == 1 and len(rules) > 1:
        if not all(isinstance(r, DenseAxis) for r in rules):
            raise PatternError(
                f"a 1D tile ({tiling.q_tile[0]}) on a {len(rules)}D grid pattern is not counted yet: "
                f"give box tiles of rank {len(rules)} (e.g. --q-tile 4x4x8 --kv-tile 4x4x8)")
        rules, q_ext, kv_ext = (DenseAxis(),), (wl.q_len,), (wl.kv_len,)
    if len(tiling.q_tile) != len(rules):
        raise PatternError(f"q_tile {tiling.q_tile} has rank {len(tiling.q_tile)} but the pattern "
                           f"has {len(rules)} dims: give {len(rules)} extents or one number")
    per_dim = [axis_tiles(r, a, b, tq, tk) for r, a, b, tq, tk in
               zip(rules, q_ext, kv_ext, tiling.q_tile, tiling.kv_tile)]
    total = math.prod(a.total for a in per_dim)
    nonempty = math.prod(a.nonempty for a in per_dim)
    full = math.prod(a.full for a in per_dim)
    visited = {"block-sparse": nonempty, "range": math.prod(a.range_visited for a in per_dim),
               "dense": total}[tiling.policy]
    if tiling.policy == "block-sparse":
        masked = nonempty - full
    else:
        masked = 0 if visited == full else visited
    return TileCounts(tiling.q_tile, tiling.kv_tile, tiling.policy, total, full, nonempty - full,
                      total - nonempty, visited, masked, math.prod(a.q_tiles for a in per_dim))
