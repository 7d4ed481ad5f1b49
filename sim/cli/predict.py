"""``attnsim predict`` and ``attnsim speedup``."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..errors import AttnsimError
from ..hwmodels import list_profiles, load_profile
from ..predict_api import Prediction, predict as run_predict
from . import fmt
from .options import workload_options


@click.command()
@click.option("--hw", "hw_name", default="H100-SXM", show_default=True, help="Profile name or YAML file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--kernel", default=None, help="Price a real kernel's work model (sdpa-flash, sdpa-math, flex, "
              "natten, unfused, ...); calibrated when the profile has an overlay (attnsim calibrate).")
@workload_options
def predict(spec, hw_name: str, as_json: bool, kernel: str | None) -> None:
    """Exact counts, roofline and predicted time of a pattern, and its speedup vs dense."""
    wl, pattern, tiling, baseline = spec
    result = run_predict(wl, pattern, load_profile(hw_name), tiling, baseline, kernel)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        render_prediction(result, Console())


def render_prediction(r: Prediction, console: Console) -> None:
    c, roof = r.pattern.counts, r.pattern.roofline
    console.print(f"[bold]{c.pattern}[/] on [bold]{r.hw.name}[/] ({r.hw.kind}) — {fmt.workload_line(c.workload)}")
    counts = Table(title="Exact counts (all batches and heads)", show_header=True)
    counts.add_column("quantity")
    counts.add_column("pattern", justify="right")
    counts.add_column("dense", justify="right")
    d = r.dense.counts
    for label, mine, dense in (
        ("attended (q,k) pairs", c.attended_pairs, d.attended_pairs),
        ("matmul FLOPs", c.flops.matmul, d.flops.matmul),
        ("exponentials", c.flops.exp, d.flops.exp),
        ("other softmax FLOPs", c.flops.softmax_other, d.flops.softmax_other),
    ):
        counts.add_row(label, fmt.si(mine), fmt.si(dense))
    counts.add_row("compulsory bytes", fmt.bytes_(c.bytes.compulsory), fmt.bytes_(d.bytes.compulsory))
    counts.add_row("unfused bytes", fmt.bytes_(c.bytes.unfused), fmt.bytes_(d.bytes.unfused))
    counts.add_row("density", f"{c.density:.4%}", "100%")
    console.print(counts)

    times = Table(title=f"Time on {r.hw.name}")
    times.add_column("roof")
    times.add_column("pattern", justify="right")
    times.add_column("dense", justify="right")
    for name, t in roof.roofs_s.items():
        mark = " ◀ binds" if name == roof.bound_by else ""
        times.add_row(name + mark, fmt.seconds(t), fmt.seconds(r.dense.roofline.roofs_s[name]))
    times.add_row("[bold]roofline[/]", fmt.seconds(roof.time_s), fmt.seconds(r.dense.roofline.time_s))
    times.add_row("[bold]predicted[/]", fmt.seconds(r.pattern.predicted_s), fmt.seconds(r.dense.predicted_s))
    console.print(times)
    if r.pattern.tile_time is not None or r.pattern.kernel_note is not None or r.hw.kind not in ("gpu", "cpu"):
        model = ("Tile-level model" if r.pattern.tile_time is not None else
                 "Kernel work model" if r.pattern.kernel_note is not None else f"{r.hw.kind} stage model")
        parts = Table(title=f"{model}: where the predicted time goes")
        for col in ("component", "pattern", "dense"):
            parts.add_column(col, justify="left" if col == "component" else "right")
        names = list(dict.fromkeys([*r.pattern.breakdown_s, *r.dense.breakdown_s]))
        for name in names:
            mine, dense = r.pattern.breakdown_s.get(name, 0.0), r.dense.breakdown_s.get(name, 0.0)
            if mine or dense:
                parts.add_row(name, fmt.seconds(mine) if mine else "-", fmt.seconds(dense) if dense else "-")
        console.print(parts)
    if r.pattern.energy_j:
        console.print(f"Energy: {_joules(r.pattern.energy_j)} (dense {_joules(r.dense.energy_j)}) — "
                      f"{r.pattern.energy_note}")
    s = r.speedup_vs_dense
    t = c.tiles
    if t is not None:
        console.print(f"Tiles ({t.policy}, Q {'x'.join(map(str, t.q_tile))} / KV {'x'.join(map(str, t.kv_tile))}, "
                      f"per head): {t.total:,} total, {t.full:,} full, {t.partial:,} partial, {t.empty:,} empty; "
                      f"{t.visited:,} visited, {t.masked:,} masked")
    console.print(f"Speedup vs dense: FLOP bound [bold]{fmt.ratio(s['flop'])}[/], tile bound "
                  f"[bold]{fmt.ratio(s['tile'])}[/], roofline [bold]{fmt.ratio(s['roofline'])}[/], "
                  f"predicted [bold]{fmt.ratio(s['predicted'])}[/]")
    console.print("[dim]Assumptions:[/]")
    for note in r.assumptions:
        console.print(f"[dim] • {note}[/]")


@click.command()
@click.option("--hw", "hw_names", multiple=True, help="Profiles to compare (repeat); default: all shipped.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per profile.")
@click.option("--case", default=None, help="A paper case with a target comparison (convsharevit: optical 4f vs "
              "GPU, with the stage breakdown and the paper's claim).")
@workload_options
def speedup(spec, hw_names: tuple[str, ...], as_json: bool, case: str | None) -> None:
    """One table: the pattern versus dense attention on several hardware profiles."""
    if case:
        from .optical import run_case

        run_case(case, hw_names, spec, as_json)
        return
    wl, pattern, tiling, baseline = spec
    profiles = [load_profile(n) for n in hw_names] if hw_names else list_profiles()
    rows = []
    for hw in profiles:
        try:
            rows.append(run_predict(wl, pattern, hw, tiling, baseline).to_dict())
        except AttnsimError as err:  # e.g. a dtype this device lacks: say so in its row
            rows.append({"hw": {"name": hw.name, "kind": hw.kind}, "error": str(err)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{pattern.describe()} vs dense — {fmt.workload_line(wl)}")
    for col in ("hardware", "bound by", "dense", "pattern", "FLOP bound", "tile bound", "roofline", "predicted"):
        table.add_column(col, justify="left" if col in ("hardware", "bound by") else "right")
    errors = []
    for row in rows:
        if "error" in row:
            table.add_row(row["hw"]["name"], "[red]n/a[/]", *["-"] * 6)
            errors.append(f"{row['hw']['name']}: {row['error']}")
            continue
        t, s = row["time_s"], row["speedup_vs_dense"]
        table.add_row(row["hw"]["name"], row["bound_by"], fmt.seconds(t["dense_predicted"]),
                      fmt.seconds(t["predicted"]), fmt.ratio(s["flop"]), fmt.ratio(s["tile"]), fmt.ratio(s["roofline"]),
                      fmt.ratio(s["predicted"]))
    console = Console()
    console.print(table)
    for line in errors:
        console.print(f"[red]n/a[/] {line}")


def _joules(parts: dict[str, float]) -> str:
    total = sum(parts.values())
    if len(parts) == 1:
        return f"{total:.3g} J"
    return f"{total:.3g} J (" + ", ".join(f"{k} {v:.2g}" for k, v in parts.items()) + ")"
