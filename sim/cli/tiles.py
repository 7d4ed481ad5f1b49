"""``attnsim tiles``: exact tile counts of one tiling, its per-dimension grid, and a map."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..hwmodels import load_profile
from ..tilemap import draw_tile_map, tile_grid, tile_map
from ..tiles import POLICY_NOTES, count_tiles
from . import fmt
from .options import workload_options

COUNT_FIELDS = ("total", "full", "partial", "empty", "visited", "masked")


@click.command()
@click.option("--hw", "hw_name", default=None,
              help="Take unset tiles from this profile (NATTEN's boxes on grids); default: "
                   "FlexAttention's 128-token blocks.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--png", "png", default=None, metavar="PATH",
              help="Draw the (Q tile, KV tile) map to this PNG file (needs matplotlib).")
@workload_options
def tiles(spec, hw_name: str | None, as_json: bool, png: str | None) -> None:
    """Full, partial, empty and visited tiles of a tiling (per batch and head), optionally drawn."""
    wl, pattern, request, _ = spec
    tiling = request.resolve(wl, pattern, load_profile(hw_name) if hw_name else None)
    counts = count_tiles(wl, pattern, tiling)
    dims = tile_grid(wl, pattern, tiling)
    if png is not None:  # before any output: a bad path or a too-large map prints one error only
        draw_tile_map(tile_map(wl, pattern, tiling), png)
    result = {**counts.to_dict(), "pattern": pattern.describe(), "workload": fmt.workload_line(wl),
              "dims": [{"q_extent": d.q_extent, "kv_extent": d.kv_extent, "groups": d.groups,
                        "q_tiles_per_group": d.q_tiles, "kv_tiles_per_group": d.kv_tiles} for d in dims],
              "flattened": len(tiling.q_tile) == 1 and len(wl.q_grid) > 1, "png": png}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        render(result, Console())


def render(r: dict, console: Console) -> None:
    console.print(f"[bold]{r['pattern']}[/] — {r['workload']}")
    counts = Table(title=f"Tiles per (batch, head): Q {r['q_tile']} / KV {r['kv_tile']}, {r['policy']} policy")
    for col in ("tiles", "count", "share of total"):
        counts.add_column(col, justify="left" if col == "tiles" else "right")
    for key in COUNT_FIELDS:
        counts.add_row(key, f"{r[key]:,}", f"{r[key] / r['total']:.2%}")
    console.print(counts)
    grid = Table(title="Tile grid per dimension (each padded to a multiple of tile x dilation)")
    for col in ("dim", "Q extent", "KV extent", "groups", "Q tiles/group", "KV tiles/group"):
        grid.add_column(col, justify="right")
    for i, d in enumerate(r["dims"]):
        values = (d["q_extent"], d["kv_extent"], d["groups"], d["q_tiles_per_group"], d["kv_tiles_per_group"])
        grid.add_row("flat" if r["flattened"] else str(i), *map(str, values))
    console.print(grid)
    console.print(f"[dim]{POLICY_NOTES[r['policy']]}[/]")
    if r["png"]:
        console.print(f"Tile map written to {r['png']}")
