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
from dataclasses import dataclass, field
from functools import lru_cache

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
             "to its last query's window end, masking every visited tile unless no visited tile "
             "drops a real pair, then only tiles holding padding (NATTEN Hopper/Blackwell FNA "
             "get_trip_count / is_fully_block_sparse)",
    "dense": "dense policy: visit every tile, mask all unless every tile is full",
}
FLEX_BLOCK = 128  # torch.nn.attention.flex_attention: default BLOCK_SIZE of create_block_mask


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


def default_tiling(wl: Workload, pattern: Pattern, hw=None, policy: str | None = None) -> Tiling:
    """The tiles the kernel that would run this problem uses.

    1D layouts: FlexAttention's 128x128 BlockMask blocks. Token grids: the device's fused NATTEN
    box tiles for the head dim (profile section ``natten_tiles``) with NATTEN's range policy;
    devices without them (CPUs, GPUs NATTEN has no fused kernel for) run FlexAttention, so
    128x128 blocks of the row-major flattened grid. Decode: 16-row Q tiles.
    """
    if pattern.preferred_tiling() is not None:  # the pattern fixes the kernel's tile (STA, Swin)
        return pattern.preferred_tiling()
    rank = 1 if pattern.edge_tiled else len(pattern.layout(wl).q_extents)
    if wl.phase == "decode":  # decode kernels pad the few new queries to a 16-row MMA tile
        return Tiling((min(FLEX_BLOCK, 16 * _ceil_div(wl.q_len, 16)),), (FLEX_BLOCK,), policy or "block-sparse")
    fused = getattr(hw, "natten_tiles", None)
    shapes = fused.for_problem(rank, max(wl.qk_head_dim, wl.v_head_dim)) if fused and rank > 1 else None
    if shapes is None:
        return Tiling((FLEX_BLOCK,), (FLEX_BLOCK,), policy or "block-sparse")
    return Tiling(*shapes, policy or "range")


@dataclass(frozen=True)
class TilingRequest:
    """Tile flags as a user gave them; what is unset comes from the device (default_tiling)."""

    q_tile: tuple[int, ...] | None = None
    kv_tile: tuple[int, ...] | None = None
    policy: str | None = None

    def resolve(self, wl: Workload, pattern: Pattern, hw=None) -> Tiling:
        if self.q_tile is None and self.kv_tile is None:
            return default_tiling(wl, pattern, hw, self.policy)
        q_tile = self.q_tile or self.kv_tile
        # Box tiles are NATTEN's (range policy), 1D blocks FlexAttention's (block-sparse).
        policy = self.policy or ("range" if len(q_tile) > 1 else "block-sparse")
        return Tiling(q_tile, self.kv_tile or q_tile, policy)


@dataclass(frozen=True)
class AxisTiles:
    """One dimension's tiles: per Q tile (dilation groups one after another), how many KV
    tiles of its group exist, are non-empty, are full, lie in NATTEN's visited range, and —
    counting only tiles where both the Q and the KV tile hold real (non-padding) tokens — how
    many exist in total and in the range, and how many keep every real pair (``real_full``)."""

    kv_total: np.ndarray
    nonempty: np.ndarray
    full: np.ndarray
    range_visited: np.ndarray
    real_full: np.ndarray
    range_real: np.ndarray
    total_real: np.ndarray

    def rows(self) -> np.ndarray:
        return np.stack([getattr(self, f) for f in self.__dataclass_fields__], axis=1)


@dataclass(frozen=True)
class QTileWork:
    """Histogram of the work of one (batch, head) problem's Q tiles (one CTA each in a fused
    kernel): ``count[i]`` Q tiles visit ``visited[i]`` KV tiles, ``masked[i]`` of them masked."""

    visited: np.ndarray
    masked: np.ndarray
    count: np.ndarray


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
    work: QTileWork = field(repr=False, compare=False)

    @property
    def tiling(self) -> Tiling:
        return Tiling(self.q_tile, self.kv_tile, self.policy)

    @property
    def visited_pairs(self) -> int:
        """(query, key) slots computed in visited tiles, padding and masked-out pairs included."""
        return self.visited * math.prod(self.q_tile) * math.prod(self.kv_tile)

    def to_dict(self) -> dict:
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "work"}
        out["q_tile"], out["kv_tile"] = "x".join(map(str, self.q_tile)), "x".join(map(str, self.kv_tile))
        return out


def _ceil_div(a, b):
    return -(-a // b)


def _group_tiles(rule, g: AxisGroup, length_q: int, length_kv: int, tq: int, tk: int) -> AxisTiles:
    # NATTEN pads the raw axis to a multiple of tile*dilation, so every group gets
    # ceil(L / (t*d)) tiles; with dilation 1 this is plain padding to a tile multiple.
    nq, nk = _ceil_div(length_q, tq * g.step), _ceil_div(length_kv, tk * g.step)
    nk_real = _ceil_div(g.kv_len, tk)
    first = np.arange(nq, dtype=np.int64) * tq
    # Range policy (NATTEN trip count): corners of the tile, padding included.
    lo_c, _ = rule.bounds(first, g)
    _, hi_c = rule.bounds(first + tq - 1, g)
    range_visited = np.maximum(_ceil_div(hi_c, tk) - lo_c // tk, 0)
    # Exact classification over valid queries only; Q tiles of pure padding stay empty.
    start, stop = rule.bounds(np.arange(g.q_len, dtype=np.int64), g)
    has_keys = stop > start
    cuts = first[:_ceil_div(g.q_len, tq)]
    n_real_q = len(cuts)
    big = np.iinfo(np.int64).max
    lo = np.minimum.reduceat(np.where(has_keys, start, big), cuts)
    hi = np.maximum.reduceat(np.where(has_keys, stop, -1), cuts)
    all_keys = np.logical_and.reduceat(has_keys, cuts)
    inner_lo = np.maximum.reduceat(start, cuts)   # keys every query of the tile keeps
    inner_hi = np.minimum.reduceat(stop, cuts)
    # Full: a complete Q tile whose queries all keep a whole, padding-free KV tile.
    complete = (cuts + tq <= g.q_len) & all_keys
    whole = np.maximum(np.minimum(inner_hi, (g.kv_len // tk) * tk) // tk - _ceil_div(inner_lo, tk), 0)
    # Real-full: every real pair kept; the last, padded KV tile counts if it is covered.
    tail = (g.kv_len % tk != 0) & (inner_hi >= g.kv_len) & (g.kv_len // tk >= _ceil_div(inner_lo, tk))
    per_q = {
        "nonempty": np.where(hi > lo, _ceil_div(hi, tk) - lo // tk, 0),
        "full": np.where(complete, whole, 0),
        "real_full": np.where(all_keys, np.maximum(inner_hi // tk - _ceil_div(inner_lo, tk), 0) + tail, 0),
        "range_real": np.maximum(np.minimum(_ceil_div(hi_c, tk), nk_real) - lo_c // tk, 0)[:n_real_q],
        "total_real": np.full(n_real_q, nk_real),
    }
    padded = {k: np.concatenate([v.astype(np.int64), np.zeros(nq - n_real_q, dtype=np.int64)])
              for k, v in per_q.items()}
    return AxisTiles(kv_total=np.full(nq, nk, dtype=np.int64), range_visited=range_visited, **padded)


def axis_tiles(rule, lq: int, lkv: int, tq: int, tk: int) -> AxisTiles:
    parts = [_group_tiles(rule, g, lq, lkv, tq, tk) for g in rule.groups(lq, lkv)]
    return AxisTiles(*(np.concatenate([getattr(p, f) for p in parts]) for f in AxisTiles.__dataclass_fields__))


@lru_cache(maxsize=4096)
def axis_rows(rule, lq: int, lkv: int, tq: int, tk: int) -> np.ndarray:
    """One dimension's per-Q-tile rows, read-only and memoised: a sweep over windows, strides
    and tiles of a grid meets the same (rule, extent, tile) dimension many times."""
    rows = axis_tiles(rule, lq, lkv, tq, tk).rows()
    rows.setflags(write=False)
    return rows


_UNIQUE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(rows, axis=0, return_counts=True), memoised by content (cheap to hash: a few
    hundred small rows) for sweeps."""
    key = (rows.shape, rows.tobytes())
    if key not in _UNIQUE:
        if len(_UNIQUE) > 4096:
            _UNIQUE.clear()
        _UNIQUE[key] = np.unique(rows, axis=0, return_counts=True)
    return _UNIQUE[key]


def _box_histogram(per_dim_rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Distinct per-box rows (AxisTiles columns), their multiplicities, and a key that names
    them (for memos downstream). Each column of a box is the product of its dimensions'
    columns: a box tile is empty if empty in some dimension, full (or real-full, or real) only
    if so in all, and the range is a product of ranges."""
    width = per_dim_rows[0].shape[1]
    rows, mult = np.ones((1, width), dtype=np.int64), np.ones(1, dtype=np.int64)
    key: tuple = ()
    for rows_of_dim in per_dim_rows:
        # memoised per prefix of dimensions: a sweep over per-dimension windows reuses the
        # product of the first dimensions for every value of the last
        key += ((rows_of_dim.shape, rows_of_dim.tobytes()),)
        if key not in _PREFIX:
            uniq, cnt = _unique_rows(rows_of_dim)
            merged = _merge_equal_rows((rows[:, None, :] * uniq[None, :, :]).reshape(-1, width),
                                       np.outer(mult, cnt).ravel())
            for a in merged:
                a.setflags(write=False)
            if len(_PREFIX) > 4096:
                _PREFIX.clear()
            _PREFIX[key] = merged
        rows, mult = _PREFIX[key]
    return rows, mult, key


_PREFIX: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _merge_equal_rows(rows: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (lexicographic order, as np.unique(axis=0)) with summed multiplicities; a
    lexsort, ~5x faster than np.unique's structured-dtype path on these small integer tables."""
    order = np.lexsort(rows.T[::-1])
    rows, mult = rows[order], mult[order]
    starts = np.flatnonzero(np.concatenate(([True], (rows[1:] != rows[:-1]).any(axis=1))))
    return rows[starts], np.add.reduceat(mult, starts)


def _flat_rows(lay, tiling: Tiling) -> list[np.ndarray]:
    """1D blocks of the row-major flattened grid (FlexAttention on a multi-D pattern)."""
    if tiling.policy == "range":
        raise PatternError("policy range needs box tiles on a multi-D grid (NATTEN tiles the grid, "
                           "not the flat sequence): use --policy block-sparse or box tiles")
    from .flat_tiles import flat_block_counts  # noqa: PLC0415 (only this path needs it)

    fb = flat_block_counts(lay.rules, lay.q_extents, lay.kv_extents, tiling.q_tile[0], tiling.kv_tile[0])
    kv_total = np.full(len(fb.nonempty), fb.kv_blocks, dtype=np.int64)
    # Range columns are unused under block-sparse; under dense, padding counts as masking.
    return [np.stack([kv_total, fb.nonempty, fb.full, kv_total, fb.full, kv_total, kv_total], axis=1)]


def dim_rows(lay, tiling: Tiling) -> list[np.ndarray]:
    rules, q_ext, kv_ext = lay.rules, lay.q_extents, lay.kv_extents
    if len(tiling.q_tile) == 1 and len(rules) > 1:
        if not all(isinstance(r, DenseAxis) for r in rules):
            return _flat_rows(lay, tiling)
        rules, q_ext, kv_ext = (DenseAxis(),), (math.prod(q_ext),), (math.prod(kv_ext),)
    if len(tiling.q_tile) != len(rules):
        raise PatternError(f"q_tile {tiling.q_tile} has rank {len(tiling.q_tile)} but the pattern "
                           f"has {len(rules)} dims: give {len(rules)} extents or one number")
    return [axis_rows(r, a, b, tq, tk) for r, a, b, tq, tk in
            zip(rules, q_ext, kv_ext, tiling.q_tile, tiling.kv_tile)]


def per_dim_fractions(wl: Workload, pattern: Pattern, tiling: Tiling) -> list[dict] | None:
    """Per dimension: the fraction of KV tiles that are non-empty, full and in NATTEN's range,
    averaged over Q tiles. Box counts are products over dimensions, so these fractions multiply
    to the whole problem's. None for 1D blocks of a multi-D grid (no per-dimension split)."""
    if pattern.edge_tiled:
        return None
    lay = pattern.tile_layout(wl)
    if len(tiling.q_tile) != len(lay.rules):
        return None
    out = []
    for rows in dim_rows(lay, tiling):
        kv_total = rows[:, 0].sum()
        out.append({"nonempty": rows[:, 1].sum() / kv_total, "full": rows[:, 2].sum() / kv_total,
                    "range": rows[:, 3].sum() / kv_total, "q_tiles": len(rows),
                    "kv_tiles_per_q_tile": kv_total / len(rows)})
    return out


def permuted_tokens(wl: Workload, pattern: Pattern, tiling: Tiling) -> tuple[int, int] | None:
    """(query, key) tokens per problem in NATTEN's permuted layout (each dimension padded to a
    multiple of tile x dilation), or None when the tiles cut the tokens in place (1D blocks)."""
    if pattern.edge_tiled:
        return None
    lay = pattern.layout(wl)
    dil = [getattr(r, "dilation", 1) for r in lay.rules]
    if len(tiling.q_tile) != len(lay.rules) or (len(dil) == 1 and dil[0] == 1):
        return None

    def padded(extents, tile):
        return math.prod(_ceil_div(n, t * d) * t * d for n, t, d in zip(extents, tile, dil))

    return padded(lay.q_extents, tiling.q_tile), padded(lay.kv_extents, tiling.kv_tile)


def _column_sums(rows: np.ndarray, mult: np.ndarray) -> list[int]:
    """Each column's sum weighted by ``mult``, exactly (one product when int64 cannot overflow)."""
    if int(rows.max(initial=0)) * int(mult.sum()) < 2**62 and rows.min(initial=0) >= 0:
        return [int(v) for v in rows.T @ mult]
    return [_weighted_sum(c, mult) for c in rows.T]


def _weighted_sum(values: np.ndarray, mult: np.ndarray) -> int:
    """sum(values * mult) exactly: int64 when no partial sum can overflow, else Python ints."""
    if len(values) and int(np.abs(values).max()) * int(mult.sum()) < 2**62:
        return int(np.dot(values, mult))
    return sum(int(v) * int(m) for v, m in zip(values, mult))


def count_tiles(wl: Workload, pattern: Pattern, tiling: Tiling | TilingRequest) -> TileCounts:
    """Tile counts per (batch, head) problem; raises PatternError for unusable tilings.
    A TilingRequest's unset parts take the device-free defaults (FlexAttention blocks)."""
    if isinstance(tiling, TilingRequest):
        tiling = tiling.resolve(wl, pattern)
    if pattern.edge_tiled:
        if len(tiling.q_tile) != 1:
            raise PatternError(f"--pattern {pattern.name} is tiled in 1D blocks: give --q-tile 128, not "
                               f"{'x'.join(map(str, tiling.q_tile))}")
        per_dim = [pattern.tile_rows(wl, tiling.q_tile[0], tiling.kv_tile[0])]
    else:
        per_dim = dim_rows(pattern.tile_layout(wl), tiling)
    rows, mult, key = _box_histogram(per_dim)
    if (key, tiling.policy) not in _SUMMARIES:
        if len(_SUMMARIES) > 4096:
            _SUMMARIES.clear()
        _SUMMARIES[key, tiling.policy] = _summary(rows, mult, tiling.policy)
    sums, visited, n_masked, work = _SUMMARIES[key, tiling.policy]
    return TileCounts(tiling.q_tile, tiling.kv_tile, tiling.policy, sums["total"], sums["full"],
                      sums["nonempty"] - sums["full"], sums["total"] - sums["nonempty"], visited,
                      n_masked, int(mult.sum()), work)


# memo of _summary by box histogram and policy: a sweep meets the same histogram many times
_SUMMARIES: dict[tuple, tuple[dict, int, int, QTileWork]] = {}


def _summary(rows: np.ndarray, mult: np.ndarray, policy: str) -> tuple[dict, int, int, QTileWork]:
    """(column sums, visited tiles, masked tiles, per-Q-tile work) of a box histogram."""
    kv_total, nonempty, full, ranged, real_full, range_real, total_real = rows.T
    sums = dict(zip(("total", "nonempty", "full", "range", "real_full", "range_real", "total_real"),
                    _column_sums(rows, mult)))
    visited_col = {"block-sparse": "nonempty", "range": "range", "dense": "total"}[policy]
    visited = {"nonempty": nonempty, "range": ranged, "total": kv_total}[visited_col]
    if policy == "block-sparse":
        masked, n_masked = nonempty - full, sums["nonempty"] - sums["full"]
    else:
        # NATTEN masks every visited tile unless no visited tile drops a real pair (its
        # is_fully_block_sparse); then only tiles holding padding get the padding mask.
        real = "range_real" if policy == "range" else "total_real"
        no_drops = sums[real] == sums["real_full"]  # sum over rows of (real - real_full) = 0
        masked = visited - full if no_drops else visited
        n_masked = sums[visited_col] - sums["full"] if no_drops else sums[visited_col]
    for a in (visited, masked):
        a.setflags(write=False)
    return sums, sums[visited_col], n_masked, QTileWork(visited, masked, mult)
