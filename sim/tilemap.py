"""The class of every (Q tile, KV tile) pair of a tiling, and a picture of it.

:func:`tile_map` gives what :func:`attnsim.tiles.count_tiles` only counts: an int8 matrix with
one cell per (Q tile, KV tile) pair (``EMPTY``, ``PARTIAL``, ``FULL``) and the boolean matrix of
the pairs the tiling's policy visits. It never builds the N x N mask: per dimension and dilation
group it classifies (q tiles x kv tiles) from ``rule.bounds`` with the reasoning of
attnsim.tiles, then combines dimensions by an outer product (a box is empty if empty in some
dimension, full if full in all: the minimum of the per-dimension codes).

Rows and columns are ordered by dilation group, then row-major tile index: row ``r`` is
``np.unravel_index(r, tmap.q_shape)`` = (group per dim..., tile per dim...). NATTEN's token
permutation makes every dilation group its own problem, so a Q tile and a KV tile of different
groups form no pair: those cells hold ``NO_PAIR`` and are never visited, and the matrix is
block-diagonal over groups. Counting the cells gives back ``count_tiles``' total, full,
partial, empty and visited exactly.
"""
from __future__ import annotations

import functools
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AttnsimError, PatternError
from .patterns.axes import DenseAxis
from .patterns.base import Pattern
from .tiles import Tiling
from .workload import Workload

NO_PAIR, EMPTY, PARTIAL, FULL = -1, 0, 1, 2
MAX_SIDE = 4096  # Q tiles or KV tiles a map may have


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class DimGrid:
    """One dimension's tile grid: every dilation group gets the same number of tiles."""

    q_extent: int
    kv_extent: int
    groups: int
    q_tiles: int   # per group
    kv_tiles: int  # per group


@dataclass(frozen=True)
class TileMap:
    """Per-pair tile classes (``NO_PAIR``/``EMPTY``/``PARTIAL``/``FULL``) and the visited pairs."""

    classes: np.ndarray  # int8, (prod(q_shape), prod(kv_shape))
    visited: np.ndarray  # bool, same shape
    dims: tuple[DimGrid, ...]
    tiling: Tiling
    title: str           # pattern and tokens, for pictures

    @property
    def q_shape(self) -> tuple[int, ...]:
        """Row index layout: (groups per dim..., Q tiles per group per dim...)."""
        return tuple(d.groups for d in self.dims) + tuple(d.q_tiles for d in self.dims)

    @property
    def kv_shape(self) -> tuple[int, ...]:
        return tuple(d.groups for d in self.dims) + tuple(d.kv_tiles for d in self.dims)

    def counts(self) -> dict[str, int]:
        """total/full/partial/empty/visited, cell by cell: count_tiles' numbers (its ``masked``
        depends on kernel rules the map does not draw, so it is left to count_tiles)."""
        c = self.classes
        full, partial, empty = int((c == FULL).sum()), int((c == PARTIAL).sum()), int((c == EMPTY).sum())
        return dict(total=full + partial + empty, full=full, partial=partial, empty=empty,
                    visited=int(self.visited.sum()))


def _resolve(wl: Workload, pattern: Pattern, tiling: Tiling):
    """(rules, q extents, kv extents, flat): count_tiles' rules for tile rank vs grid rank.

    ``flat`` marks 1D blocks over the flattened sequence of a non-dense multi-D pattern.
    """
    lay = pattern.tile_layout(wl)
    rules, q_ext, kv_ext = lay.rules, lay.q_extents, lay.kv_extents
    if len(tiling.q_tile) == 1 and len(rules) > 1:
        if all(isinstance(r, DenseAxis) for r in rules):
            return (DenseAxis(),), (wl.q_len,), (wl.kv_len,), False
        return rules, q_ext, kv_ext, True
    if len(tiling.q_tile) != len(rules):
        raise PatternError(f"q_tile {tiling.q_tile} has rank {len(tiling.q_tile)} but the pattern "
                           f"has {len(rules)} dims: give {len(rules)} extents or one number")
    return rules, q_ext, kv_ext, False


def tile_grid(wl: Workload, pattern: Pattern, tiling: Tiling) -> tuple[DimGrid, ...]:
    """Per-dimension tile grid of a tiling (one flattened dimension for 1D blocks)."""
    rules, q_ext, kv_ext, flat = _resolve(wl, pattern, tiling)
    if flat:
        (tq,), (tk,) = tiling.q_tile, tiling.kv_tile
        return (DimGrid(wl.q_len, wl.kv_len, 1, _ceil_div(wl.q_len, tq), _ceil_div(wl.kv_len, tk)),)
    dims = []
    for rule, lq, lk, tq, tk in zip(rules, q_ext, kv_ext, tiling.q_tile, tiling.kv_tile):
        groups = rule.groups(lq, lk)  # NATTEN pads each dim to a multiple of tile x dilation
        step = groups[0].step
        dims.append(DimGrid(lq, lk, len(groups), _ceil_div(lq, tq * step), _ceil_div(lk, tk * step)))
    return tuple(dims)


def _between(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """(len(lo), n) boolean matrix: column j lies in [lo[t], hi[t])."""
    j = np.arange(n)
    return (j >= lo[:, None]) & (j < hi[:, None])


def _group_map(rule, g, nq: int, nk: int, tq: int, tk: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, range-visited) of one dimension's dilation group, as attnsim.tiles counts them."""
    first = np.arange(nq, dtype=np.int64) * tq
    lo_c, _ = rule.bounds(first, g)
    _, hi_c = rule.bounds(first + tq - 1, g)
    ranged = _between(lo_c // tk, _ceil_div(hi_c, tk), nk)
    start, stop = rule.bounds(np.arange(g.q_len, dtype=np.int64), g)
    has_keys = stop > start
    cuts = first[:_ceil_div(g.q_len, tq)]
    big = np.iinfo(np.int64).max
    lo = np.minimum.reduceat(np.where(has_keys, start, big), cuts)
    hi = np.maximum.reduceat(np.where(has_keys, stop, -1), cuts)
    nonempty = _between(np.where(hi > lo, lo // tk, 0), np.where(hi > lo, _ceil_div(hi, tk), 0), nk)
    inner_lo = np.maximum.reduceat(start, cuts)
    inner_hi = np.minimum(np.minimum.reduceat(np.where(has_keys, stop, -1), cuts), (g.kv_len // tk) * tk)
    complete = (cuts + tq <= g.q_len) & np.logical_and.reduceat(has_keys, cuts)
    full = _between(_ceil_div(inner_lo, tk), np.where(complete, inner_hi // tk, 0), nk)
    classes = np.zeros((nq, nk), dtype=np.int8)
    classes[:len(cuts)] = np.where(full, FULL, np.where(nonempty, PARTIAL, EMPTY))
    return classes, ranged


def _dim_maps(rule, lq: int, lk: int, tq: int, tk: int, dim: DimGrid) -> tuple[np.ndarray, np.ndarray]:
    """(groups, q tiles, groups, kv tiles) classes and range-visited of one dimension."""
    shape = (dim.groups, dim.q_tiles, dim.groups, dim.kv_tiles)
    classes, ranged = np.full(shape, NO_PAIR, dtype=np.int8), np.zeros(shape, dtype=bool)
    for i, g in enumerate(rule.groups(lq, lk)):
        classes[i, :, i, :], ranged[i, :, i, :] = _group_map(rule, g, dim.q_tiles, dim.kv_tiles, tq, tk)
    return classes, ranged


def _flat_map(rules, q_ext, kv_ext, tiling: Tiling) -> np.ndarray:
    try:
        from .flat_tiles import flat_block_classes
    except ImportError:
        raise PatternError(
            f"a 1D tile ({tiling.q_tile[0]}) on a {len(rules)}D grid pattern has no tile map yet: "
            f"give box tiles of rank {len(rules)} (e.g. --q-tile 4x4x8 --kv-tile 4x4x8)") from None
    if tiling.policy == "range":
        raise PatternError("range policy needs box tiles on a multi-D grid: use --policy "
                           f"block-sparse or dense, or box tiles of rank {len(rules)}")
    return np.asarray(flat_block_classes(rules, q_ext, kv_ext, tiling.q_tile[0], tiling.kv_tile[0]),
                      dtype=np.int8)


def tile_map(wl: Workload, pattern: Pattern, tiling: Tiling) -> TileMap:
    """Class and visited flag of every (Q tile, KV tile) pair; PatternError if unusable or too big."""
    pattern.check(wl)
    rules, q_ext, kv_ext, flat = _resolve(wl, pattern, tiling)
    dims = tile_grid(wl, pattern, tiling)
    rows, cols = (math.prod(d.groups * d.q_tiles for d in dims),
                  math.prod(d.groups * d.kv_tiles for d in dims))
    if rows > MAX_SIDE or cols > MAX_SIDE:
        raise PatternError(f"tile map of {rows} Q tiles x {cols} KV tiles is too large to build "
                           f"(at most {MAX_SIDE} per side): use bigger --q-tile/--kv-tile")
    tokens = "x".join(map(str, wl.grid)) + " tokens" if wl.grid else f"q={wl.q_len} kv={wl.kv_len}"
    flattened = len(tiling.q_tile) == 1 and wl.grid is not None and len(wl.grid) > 1
    title = f"{pattern.describe()} on {tokens}" + (" (1D blocks of the row-major sequence)" if flattened else "")
    if flat:
        classes = _flat_map(rules, q_ext, kv_ext, tiling)
        visited = classes > EMPTY if tiling.policy == "block-sparse" else np.ones_like(classes, dtype=bool)
        return TileMap(classes, visited, dims, tiling, title)
    rank = len(dims)
    per_dim = [_dim_maps(r, lq, lk, tq, tk, d) for r, lq, lk, tq, tk, d in
               zip(rules, q_ext, kv_ext, tiling.q_tile, tiling.kv_tile, dims)]

    def spread(a: np.ndarray, d: int) -> np.ndarray:
        # axes (group, q tile, group, kv tile) of dim d -> positions d, r+d, 2r+d, 3r+d
        shape = [1] * (4 * rank)
        for k, n in enumerate(a.shape):
            shape[k * rank + d] = n
        return a.reshape(shape)

    classes = functools.reduce(np.minimum, [spread(c, d) for d, (c, _) in enumerate(per_dim)]).reshape(rows, cols)
    if tiling.policy == "range":
        ranged = [spread(v, d) for d, (_, v) in enumerate(per_dim)]
        visited = functools.reduce(np.logical_and, ranged).reshape(rows, cols)
    else:
        visited = classes > EMPTY if tiling.policy == "block-sparse" else classes >= EMPTY
    return TileMap(classes, visited, dims, tiling, title)


# -- drawing ---------------------------------------------------------------------------------
# Colour and legend label of each display code 0..4; "empty, visited" is what the range and
# dense policies spend on tiles without a kept pair.
_SHOWN = (("#ffffff", "no pair (other dilation group)"), ("#e6e6e6", "empty, skipped"),
          ("#8e44ad", "empty, visited"), ("#f39c12", "partial"), ("#1f5fa8", "full"))
MAX_SLABS = 8


def _matplotlib():
    try:
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise AttnsimError("matplotlib is not installed: pip install matplotlib") from None
    return Figure, ListedColormap, Patch


def _panels(tmap: TileMap) -> list[tuple[str, np.ndarray, int]]:
    """(subtitle, rows, rows per dilation group) of each subplot."""
    rows = np.arange(tmap.classes.shape[0])
    q_tiles = [d.q_tiles for d in tmap.dims]
    if len(tmap.dims) < 3:
        return [("", rows, math.prod(q_tiles))]
    index = rows.reshape(tmap.q_shape)
    picks = np.unique(np.linspace(0, q_tiles[0] - 1, min(MAX_SLABS, q_tiles[0])).round().astype(int))
    return [(f"Q tiles with dim-0 tile index {s} (of {q_tiles[0]})",
             np.take(index, s, axis=len(tmap.dims)).ravel(), math.prod(q_tiles[1:])) for s in picks]


def _save_png(fig, path: Path, dpi: int) -> None:
    """Write to a temporary file beside ``path``, then rename: no half-written PNG on error."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        raise AttnsimError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def draw_tile_map(tmap: TileMap, path: str | Path) -> Path:
    """Draw ``tmap`` as a PNG: Q tiles (rows) x KV tiles (columns), coloured by class.

    1D and 2D layouts: the whole map, rows and columns in the TileMap's order (dilation group,
    then row-major tile index). 3D: one subplot per dim-0 Q tile index (up to 8, evenly
    spaced), stacked vertically over the same KV axis, each showing that slab's Q tiles (of
    every dilation group, group-major) against all KV tiles; stacking keeps the shared KV axis
    aligned, so the visited band can be followed as the slab moves. Thin lines separate dilation groups (when there are at most
    64 of them). The file is written atomically; AttnsimError if it cannot be.
    """
    Figure, ListedColormap, Patch = _matplotlib()
    path = Path(path)
    if not path.parent.is_dir():
        raise AttnsimError(f"cannot write {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise AttnsimError(f"cannot write {path}: it is a directory, give a file name like map.png")
    c = tmap.classes
    shown = np.select([c == NO_PAIR, (c == EMPTY) & ~tmap.visited, c == EMPTY, c == PARTIAL],
                      [0, 1, 2, 3], 4)
    cmap = ListedColormap([colour for colour, _ in _SHOWN])
    panels = _panels(tmap)
    cols = c.shape[1]
    heights = [float(np.clip(9 * len(rows) / cols, 1.0 if len(panels) > 1 else 3.0, 10.0))
               for _, rows, _ in panels]
    fig = Figure(figsize=(10, sum(heights) + 0.6 * len(panels) + 2.2), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True, height_ratios=heights)[:, 0]
    kv_block, groups = math.prod(d.kv_tiles for d in tmap.dims), math.prod(d.groups for d in tmap.dims)
    for ax, (subtitle, rows, q_block) in zip(axes, panels):
        ax.imshow(shown[rows], cmap=cmap, vmin=-0.5, vmax=4.5, aspect="auto",
                  interpolation="antialiased", interpolation_stage="rgba")
        if 1 < groups <= 64:
            ax.hlines(np.arange(q_block, len(rows), q_block) - 0.5, -0.5, cols - 0.5, colors="k", lw=0.4)
            ax.vlines(np.arange(kv_block, cols, kv_block) - 0.5, -0.5, len(rows) - 0.5, colors="k", lw=0.4)
        ax.set_title(subtitle, fontsize=9)
        ax.set_ylabel("Q tile")
    axes[-1].set_xlabel("KV tile (dilation group, then row-major tile index)")
    t = tmap.tiling
    fig.suptitle(f"{tmap.title}\nQ tile {'x'.join(map(str, t.q_tile))} / KV tile "
                 f"{'x'.join(map(str, t.kv_tile))}, {t.policy} policy: {c.shape[0]} x {cols} tiles",
                 fontsize=10)
    counts = np.bincount(shown.ravel(), minlength=len(_SHOWN))
    handles = [Patch(facecolor=colour, edgecolor="0.5", label=f"{label}: {n:,}")
               for (colour, label), n in zip(_SHOWN, counts) if label != _SHOWN[0][1] or n]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
    _save_png(fig, path, dpi=int(np.clip(cols / 8, 100, 300)))
    return path
