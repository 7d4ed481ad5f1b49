"""The optional ``natten_tiles`` profile section: a fused kernel's default tile shapes.

NATTEN picks its forward tile shapes per GPU architecture, token-grid rank and head dim; a
profile records them so ``attnsim predict`` tiles a multi-dimensional problem the way the real
kernel would. Format (rows sorted by ``head_dim_max``; a workload uses the first row whose
``head_dim_max`` is at least its head dim)::

    natten_tiles:
      source: "NATTEN 0.21.7 src/natten/backends/configs/cutlass_hopper/__init__.py ..."
      forward:
        - {head_dim_max: 64, 1d: 64/128, 2d: 8x8/16x8, 3d: 4x4x4/4x4x8}
      token_permute: true   # optional; false when the kernel tiles the grid in place
"""
from __future__ import annotations

from dataclasses import dataclass

from attnsim.errors import ProfileError

RANK_KEYS = {"1d": 1, "2d": 2, "3d": 3}


@dataclass(frozen=True)
class TileRow:
    head_dim_max: int
    tiles: dict[int, tuple[tuple[int, ...], tuple[int, ...]]]  # rank -> (q_tile, kv_tile)


@dataclass(frozen=True)
class FusedTiles:
    source: str
    rows: tuple[TileRow, ...]
    token_permute: bool = True  # False: the kernel tiles the grid in place (CUTLASS-2.x FNA)

    def for_problem(self, rank: int, head_dim: int):
        """(q_tile, kv_tile) of the first row covering ``head_dim`` and ``rank``, else None."""
        for row in self.rows:
            if head_dim <= row.head_dim_max:
                return row.tiles.get(rank)
        return None


def _shape(where: str, text, rank: int) -> tuple[int, ...]:
    try:
        shape = tuple(int(t) for t in str(text).split("x"))
    except ValueError:
        shape = ()
    if len(shape) != rank or any(t <= 0 for t in shape):
        raise ProfileError(f"{where}: expected {rank} positive extents like "
                           f"{'x'.join(['8'] * rank)}, got {text!r}")
    return shape


def _row(where: str, raw) -> TileRow:
    if not isinstance(raw, dict) or "head_dim_max" not in raw:
        raise ProfileError(f"{where}: expected {{head_dim_max: N, 1d: Q/KV, 2d: ..., 3d: ...}}, got {raw!r}")
    hd = raw["head_dim_max"]
    if isinstance(hd, bool) or not isinstance(hd, int) or hd <= 0:
        raise ProfileError(f"{where}.head_dim_max: expected a positive integer, got {hd!r}")
    tiles = {}
    for key, value in raw.items():
        if key == "head_dim_max":
            continue
        if key not in RANK_KEYS:
            raise ProfileError(f"{where}: unknown key {key!r}; use head_dim_max, 1d, 2d, 3d")
        parts = str(value).split("/")
        if len(parts) != 2:
            raise ProfileError(f"{where}.{key}: expected Q_TILE/KV_TILE like 16x8/16x8, got {value!r}")
        rank = RANK_KEYS[key]
        tiles[rank] = (_shape(f"{where}.{key}", parts[0], rank), _shape(f"{where}.{key}", parts[1], rank))
    return TileRow(hd, tiles)


def parse_fused_tiles(where: str, raw) -> FusedTiles:
    if not isinstance(raw, dict) or not {"source", "forward"} <= set(raw) <= {"source", "forward", "token_permute"}:
        raise ProfileError(f"{where}: expected the keys source, forward and optionally token_permute")
    permute = raw.get("token_permute", True)
    if not isinstance(permute, bool):
        raise ProfileError(f"{where}.token_permute: expected true or false, got {permute!r}")
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise ProfileError(f"{where}.source: say where the tile shapes come from")
    if not isinstance(raw["forward"], list) or not raw["forward"]:
        raise ProfileError(f"{where}.forward: expected a non-empty list of rows")
    rows = tuple(_row(f"{where}.forward[{i}]", r) for i, r in enumerate(raw["forward"]))
    if [r.head_dim_max for r in rows] != sorted({r.head_dim_max for r in rows}):
        raise ProfileError(f"{where}.forward: rows must have increasing head_dim_max")
    return FusedTiles(raw["source"], rows, permute)
