"""``attnsim sweep SPEC.yaml``: a grid of configurations, vectorised where closed forms exist."""
from __future__ import annotations

import json
import math

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import AttnsimError
from . import fmt

SHOWN = ("speedup", "time_s", "baseline_time_s", "bound_by")


@click.command()
@click.argument("spec_path", metavar="SPEC.yaml")
@click.option("--out", default=None, help="Write every configuration to FILE.csv or FILE.parquet.")
@click.option("--plot", "plot_path", default=None, help="PNG of the spec's plot: (x, y heatmap or series lines).")
@click.option("--dask", "use_dask", is_flag=True, help="Run the chunks on a Dask cluster (local by default).")
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler, e.g. tcp://host:8786.")
@click.option("--workers", type=int, default=2, show_default=True, help="Local Dask cluster processes.")
@click.option("--yes", is_flag=True, help="Run grids above the confirmation size.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def sweep(spec_path: str, out: str | None, plot_path: str | None, use_dask: bool, scheduler: str | None,
          workers: int, yes: bool, as_json: bool) -> None:
    """Evaluate every configuration of a sweep spec (lists/ranges of any predict flag and hw)."""
    from ..sweep_run import dask_chunks, run_sweep
    from ..sweep_spec import load_spec

    spec = load_spec(spec_path)
    spec.check_size(yes)
    if scheduler and not use_dask:
        raise AttnsimError("--scheduler needs --dask")
    if workers < 1:
        raise AttnsimError("--workers must be >= 1")
    if plot_path is not None:
        _check_plot(spec, plot_path)
    source = dask_chunks(spec, scheduler, workers) if use_dask else None
    with Progress(TextColumn("[bold]sweep[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True, disable=as_json) as bar:
        task = bar.add_task(spec.name, total=spec.points)
        result = run_sweep(spec, out, source, keep=plot_path is not None,
                           progress=lambda n: bar.advance(task, n))
    if result.valid == 0:
        reason = result.errors.most_common(1)[0][0] if result.errors else "no point evaluated"
        raise AttnsimError(f"{spec_path}: no valid configuration in the grid; e.g. {reason}")
    if plot_path is not None:
        from ..sweep_plot import plot

        plot(spec, result.kept, plot_path)
    summary = _summary(result, plot_path)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=_plain))
    else:
        _render(result, summary, Console())


def _check_plot(spec, path: str) -> None:
    if spec.plot is None:
        raise AttnsimError("--plot needs a 'plot:' section in the spec (x, value, and y or series)")
    if not path.endswith(".png"):
        raise AttnsimError(f"--plot {path}: use a .png file name")
    if spec.points > 10**6:
        raise AttnsimError(f"--plot keeps every point in memory: {spec.points:,} > 1,000,000; shrink the grid")


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _summary(r, plot_path) -> dict:
    rows = [{k: _plain(v[i]) if isinstance(v[i], np.generic) else v[i] for k, v in r.best.items()
             if k not in ("error",)} for i in range(len(r.best["error"]))]
    return {"spec": r.spec.name, "level": r.spec.level, "points": r.points, "valid": r.valid,
            "seconds": r.seconds, "points_per_s": r.rate_per_s, "engines": dict(r.engines),
            "invalid_reasons": dict(r.errors.most_common(5)), "best_by": r.spec.best, "best": rows,
            "out": r.out, "plot": plot_path}


def _render(r, s: dict, console: Console) -> None:
    engines = ", ".join(f"{n:,} {k}" for k, n in r.engines.items())
    console.print(f"[bold]{r.spec.name}[/]: {r.points:,} configurations ({r.valid:,} valid) at level "
                  f"{r.spec.level} in {fmt.seconds(r.seconds)} — {r.rate_per_s:,.0f} per second ({engines})")
    if r.errors:
        for reason, n in r.errors.most_common(3):
            console.print(f"  [yellow]{n:,} skipped[/]: {reason}")
    swept = [k for k, v in r.spec.axes.items() if len(v) > 1]
    table = Table(title=f"Best {len(s['best'])} by {r.spec.best}")
    for k in swept + [c for c in SHOWN if c in r.best]:
        table.add_column(k, justify="right")
    for row in s["best"]:
        table.add_row(*[_cell(k, row[k]) for k in swept + [c for c in SHOWN if c in r.best]])
    console.print(table)
    for key in ("out", "plot"):
        if s[key]:
            console.print(f"{key}: {s[key]}")


def _cell(key: str, v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return fmt.seconds(v) if key.endswith("_s") else _times(v) if key.startswith("speedup") else f"{v:.4g}"
    return str(v)


def _times(v: float) -> str:
    return f"{v:,.0f}x" if v >= 100 else f"{v:.3g}x"
