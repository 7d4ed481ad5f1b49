"""``attnsim explain``: the bounds of ``attnsim predict``, each with its reason in words."""
from __future__ import annotations

import json

import click
from rich.console import Console

from ..explain import explain as run_explain
from ..hwmodels import load_profile
from ..predict_api import predict as run_predict
from .options import workload_options


@click.command()
@click.option("--hw", "hw_name", default="H100-SXM", show_default=True, help="Profile name or YAML file.")
@click.option("--json", "as_json", is_flag=True, help="Print the sections as a JSON list.")
@workload_options
def explain(spec, hw_name: str, as_json: bool) -> None:
    """Why the FLOP bound, tile bound, roofline and predicted speedup are what they are."""
    wl, pattern, tiling, baseline = spec
    result = run_predict(wl, pattern, load_profile(hw_name), tiling, baseline)
    sections = run_explain(result, pattern)
    if as_json:
        click.echo(json.dumps([{"topic": s.topic, "lines": list(s.lines), "numbers": s.numbers}
                               for s in sections], indent=2, default=_jsonable))
        return
    console = Console()
    console.print(f"[bold]{pattern.describe()}[/] on [bold]{result.hw.name}[/]")
    for s in sections:
        console.print(f"\n[bold]{s.topic[0].upper() + s.topic[1:]}[/]")
        for line in s.lines:
            console.print(f"  {line}")


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
