"""``attnsim validate run|export|runs``: measure real kernels into a results database."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..errors import AttnsimError

DB_OPTION = click.option("--db", default="attnsim-results.sqlite", show_default=True,
                         help="SQLite results database.")


@click.group()
def validate() -> None:
    """Run the real kernels (torch: pip install 'attnsim[validate]'), store measurements."""


def _need_torch() -> None:
    try:
        import torch  # noqa: F401  (is it installed?)
    except ImportError:
        raise AttnsimError("validation runs kernels with torch: pip install torch==2.13.0 "
                           "(or 'attnsim[validate]')") from None


@validate.command("run")
@click.option("--suite", "suite_name", type=click.Choice(["smoke", "cpu", "multiop", "gpu"]), default="smoke", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@DB_OPTION
@click.option("--hw", default=None, help="Profile for the predictions [default: EPYC-2vCPU on cpu, by GPU name on cuda].")
@click.option("--threads", type=int, default=None, help="torch CPU threads (fixed for the whole run).")
@click.option("--budget", "budget_s", type=float, default=0.5, show_default=True,
              help="Seconds of timed repeats per (config, kernel).")
@click.option("--family", "families", multiple=True, help="Only these pattern families (repeatable).")
@click.option("--json", "as_json", is_flag=True)
def run_cmd(suite_name, device, db, hw, threads, budget_s, families, as_json):
    """Run a named suite; every measurement is committed as soon as it is taken."""
    _need_torch()
    from ..validate.run import run_suite

    if hw is not None:
        from ..hwmodels import load_profile

        load_profile(hw)  # fail before any measurement on a bad name
    out = run_suite(suite_name, device, db, hw, threads, budget_s, tuple(families), progress=not as_json)
    if as_json:
        click.echo(json.dumps(out.to_dict(), indent=2))
        return
    console = Console()
    table = Table("config", "kernel", "measured ms", "predicted ms", "pred/meas", title=f"suite {suite_name} -> {db}")
    for m in out.measured:
        table.add_row(m["config"], m["kernel"], f"{m['median_s'] * 1e3:.3f}", f"{m['predicted_s'] * 1e3:.3f}",
                      f"{m['predicted_s'] / m['median_s']:.2f}")
    console.print(table)
    for kind in ("skipped", "failed"):
        for s in getattr(out, kind):
            console.print(f"[dim]{kind}: {s['config']} {s['kernel']}: {s['reason']}[/]")


@validate.command("export")
@DB_OPTION
@click.option("--out", required=True, help="FILE.csv or FILE.parquet")
def export_cmd(db, out):
    """Export every measurement to CSV or Parquet."""
    from ..validate.store import Store

    with Store(db, create=False) as store:
        n = store.export(out)
    click.echo(f"{n} measurements -> {out}")


@validate.command("runs")
@DB_OPTION
@click.option("--json", "as_json", is_flag=True)
def runs_cmd(db, as_json):
    """The runs stored in a database, with their environment."""
    from ..validate.store import Store

    with Store(db, create=False) as store:
        runs = store.runs()
        counts = {r["id"]: len(store.rows("WHERE run_id = ?", (r["id"],))) for r in runs}
    if as_json:
        click.echo(json.dumps([{**r, "measurements": counts[r["id"]]} for r in runs], indent=2))
        return
    for r in runs:
        env = r["env"]
        click.echo(f"run {r['id']}: suite {r['suite']} on {r['device']} ({env.get('gpu') or env.get('cpu_model')}, "
                   f"torch {env.get('torch')}, {env.get('torch_threads')} threads): {counts[r['id']]} measurements")


@click.command()
@DB_OPTION
@click.option("--hw", required=True, help="Profile the measurements were taken on (e.g. EPYC-2vCPU).")
@click.option("--out", default=None, help="Overlay path [default: calibration/<profile>.yaml next to the profile].")
@click.option("--json", "as_json", is_flag=True)
def calibrate(db, hw, out, as_json):
    """Fit per-kernel cost coefficients on a train split; write a calibration overlay."""
    from pathlib import Path

    from ..hwmodels import load_profile
    from ..hwmodels.calibration import write_overlay
    from ..validate.calibrate import calibrate as fit
    from ..validate.store import Store

    profile = load_profile(hw)
    with Store(db, create=False) as store:
        kernels, fitted_on = fit(store, profile)
    path = write_overlay(profile, kernels, fitted_on, Path(out) if out else None)
    if as_json:
        click.echo(json.dumps({"overlay": str(path), "kernels": kernels, "fitted_on": fitted_on}, indent=2))
        return
    table = Table("kernel", "train n", "train MAPE", "test n", "test MAPE", "test max", title=f"{profile.name} -> {path}")
    for k, v in kernels.items():
        tr, te = v["train"], v["test"]
        table.add_row(k, str(tr["n"]), f"{tr['mape']:.1%}", str(te["n"]),
                      f"{te['mape']:.1%}" if te["n"] else "-", f"{te['max_err']:.1%}" if te["n"] else "-")
    Console().print(table)


@click.command()
@DB_OPTION
@click.option("--hw", required=True, help="Profile the measurements were taken on.")
@click.option("--split", type=click.Choice(["test", "train", "all"]), default="test", show_default=True)
@click.option("--plots", "plot_dir", default=None, help="Write PNG plots into this folder.")
@click.option("--suite", "suite_name", type=click.Choice(["smoke", "cpu", "multiop", "gpu"]), default=None,
              help="Only the configurations of this suite (default: every stored one).")
@click.option("--json", "as_json", is_flag=True)
def compare(db, hw, split, plot_dir, suite_name, as_json):
    """Model vs measured: MAPE, max error, Spearman, bound violations (held-out by default)."""
    from ..hwmodels import load_profile
    from ..validate.compare import compare as run_compare, plots, public
    from ..validate.store import Store

    profile = load_profile(hw)
    with Store(db, create=False) as store:
        report = run_compare(store, profile, split, suite_name)
    written = plots(report, profile, plot_dir) if plot_dir and report["overall"]["n"] else []
    if as_json:
        click.echo(json.dumps({**public(report), "plots": [str(p) for p in written]}, indent=2))
        return
    table = Table("family", "kernel", "model", "n", "MAPE", "max err", "Spearman",
                  title=f"{profile.name}: model vs measured ({split} split"
                  f"{', suite ' + suite_name if suite_name else ''})")
    for g in report["by_family_kernel"]:
        table.add_row(g["family"], g["kernel"], g["model"], str(g["n"]), f"{g['mape']:.1%}", f"{g['max_err']:.1%}",
                      f"{g['spearman']:.3f}")
    o = report["overall"]
    if o["n"]:
        table.add_row("[bold]all[/]", "", "", str(o["n"]), f"{o['mape']:.1%}", f"{o['max_err']:.1%}", f"{o['spearman']:.3f}")
    console = Console()
    console.print(table)
    console.print("per family (all kernels): " + ", ".join(f"{g['family']} {g['mape']:.1%} (n={g['n']})"
                                                          for g in report["by_family"]))
    console.print(f"speedup rank correlation: {report['speedup_spearman']:.3f}; "
                  f"measured speedups above the FLOP bound: {len(report['bound_violations'])}")
    for v in report["bound_violations"]:
        console.print(f"  [red]{v['config']} {v['kernel']}: {v['measured']:.2f}x > bound {v['flop_bound']:.2f}x[/]")
    for p in written:
        console.print(f"[dim]plot: {p}[/]")
