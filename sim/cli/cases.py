"""``attnsim cases list`` and ``attnsim cases run``: paper claims next to attnsim's bounds."""
from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table

from ..cases import load_cases
from ..cases.verdict import judge
from . import fmt

STYLE = {"consistent": "green", "claim above our upper bound": "red", "not comparable": "dim"}


@click.group()
def cases() -> None:
    """Papers' performance claims (cases/papers/*.yaml) checked against attnsim's bounds."""


@cases.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_cases(as_json: bool) -> None:
    """Every case: name, family, pattern and the claim with its source."""
    rows = [{"name": c.name, "family": c.family, "pattern": c.raw["pattern"]["name"], "title": c.title,
             "claim": c.claim.get("value"), "metric": c.claim.get("metric"), "scope": c.claim.get("scope"),
             "source": c.claim.get("source")} for c in load_cases()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} paper cases")
    for col in ("name", "family", "pattern", "claim", "scope"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["family"], r["pattern"], f"{r['claim']} ({r['metric']})", str(r["scope"]))
    Console().print(table)


@cases.command("run")
@click.argument("names", nargs=-1)
@click.option("--hw", "hw_name", default=None, help="Price on this profile instead of each paper's hardware.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of verdicts.")
def run_cases(names: tuple[str, ...], hw_name: str | None, as_json: bool) -> None:
    """Our FLOP bound, tile bound and predicted speedup next to each claim, with a verdict."""
    verdicts = [judge(c, hw_name) for c in load_cases(names)]
    if as_json:
        click.echo(json.dumps([asdict(v) for v in verdicts], indent=2))
        return
    table = Table(title="Paper claims vs attnsim (speedups vs the paper's baseline: dense or causal)")
    for col in ("case", "claim", "FLOP bound", "tile bound", "predicted", "hw", "verdict"):
        table.add_column(col, justify="right" if col in ("claim", "FLOP bound", "tile bound", "predicted") else "left")
    for v in verdicts:
        b = v.bounds or {}
        table.add_row(v.case, "-" if v.claim is None else f"{v.claim:g}x", fmt.ratio(b.get("flop")),
                      fmt.ratio(b.get("tile")), fmt.ratio(b.get("predicted")), v.hw or "-",
                      f"[{STYLE[v.verdict]}]{v.verdict}[/]")
    console = Console()
    console.print(table)
    for v in verdicts:
        console.print(f"[bold]{v.case}[/]: {v.reason}")
    counts = {k: sum(v.verdict == k for v in verdicts) for k in STYLE}
    console.print(", ".join(f"{n} {k}" for k, n in counts.items()))
