"""``attnsim hw list|show|check|path|probe``."""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from itertools import groupby
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from ..errors import AttnsimError
from ..hwmodels import Profile, list_profiles, load_profile, load_profile_file
from ..hwmodels.profile import parse_profile, shipped_profile_paths
from . import fmt


def _summary(p: Profile) -> dict:
    return {
        "name": p.name, "kind": p.kind, "description": p.description, "path": p.path,
        "matmul_flops_per_s": {k: q.value_si for k, q in p.matmul.items()},
        **{k: q.value_si for k, q in p.fields.items()},
    }


@click.group()
def hw() -> None:
    """Hardware profiles: list, show, check, probe."""


@hw.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """Shipped profiles, grouped by kind."""
    profiles = sorted(list_profiles(), key=lambda p: (p.kind, p.name))
    if as_json:
        click.echo(json.dumps([_summary(p) for p in profiles], indent=2))
        return
    table = Table(title="Hardware profiles")
    for col in ("kind", "name", "dense matmul", "exp", "memory BW"):
        table.add_column(col, no_wrap=True)
    for kind, group in groupby(profiles, key=lambda p: p.kind):
        for p in group:
            dtype = "bf16" if "bf16" in p.matmul else max(p.matmul, key=lambda k: p.matmul[k].value_si)
            table.add_row(kind, p.name, f"{fmt.si(p.matmul[dtype].value_si, 'FLOP/s')} ({dtype})", fmt.si(p.get("exp_per_s"), "op/s"),
                          fmt.si(p.get("memory_bw_bytes_per_s"), "B/s"))
    Console().print(table)


@hw.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def show(name: str, as_json: bool) -> None:
    """Every number of a profile with its source."""
    p = load_profile(name)
    if as_json:
        click.echo(json.dumps({**_summary(p), "sources": p.sources()}, indent=2))
        return
    table = Table(title=f"{p.name} ({p.kind}) — {p.description}")
    for col in ("field", "value", "source"):
        table.add_column(col, overflow="fold")
    rows = [(f"matmul_flops_per_s.{k}", q) for k, q in p.matmul.items()] + list(p.fields.items())
    for field, q in rows:
        table.add_row(field, f"{q.value:g} {q.unit}", q.source + (f" ({q.note})" if q.note else ""))
    Console().print(table)


@hw.command()
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate a profile file strictly (exit 2 with the field and the fix)."""
    p = load_profile_file(file)
    click.echo(f"ok: {p.name} ({p.kind}), {len(p.matmul) + len(p.fields)} sourced numbers")


@hw.command()
@click.argument("name")
def path(name: str) -> None:
    """Path of a shipped profile (to copy it as a starting point)."""
    paths = {k.lower(): v for k, v in shipped_profile_paths().items()}
    if name.lower() not in paths:
        raise AttnsimError(f"no shipped profile {name!r}; see attnsim hw list")
    click.echo(str(paths[name.lower()]))


@hw.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="YAML file to write.")
@click.option("--name", default="this-cpu", show_default=True, help="Profile name.")
def probe(out: str, name: str) -> None:
    """Measure this machine's CPU (numpy; torch adds bf16/fp16 matmul) into a profile whose
    numbers say 'measured: …'."""
    from ..hwmodels.probe import probe as run_probe

    with Console(stderr=True).status("probing matmul, exp, vector and memory rates…"):
        data = run_probe(name)
        if importlib.util.find_spec("torch") is not None:  # per-dtype matmul rates need torch (the
            from ..validate.probe_torch import matmul_entries  # validate extra); numpy measures fp32 only

            data["matmul_flops_per_s"].update(matmul_entries(f"on {data['description'].split(' (')[0]}"))
    parse_profile(data, out)  # never write a profile our own loader would refuse
    target = Path(out)
    # Write to a temporary file and rename, so an interrupted probe leaves nothing half-written.
    fd, tmp = tempfile.mkstemp(dir=target.parent or ".", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    os.replace(tmp, target)
    click.echo(f"wrote {target} ({name}); check it with: attnsim hw check {target}")
