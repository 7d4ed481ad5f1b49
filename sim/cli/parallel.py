"""``attnsim cp``: attention split across G devices (ring, Ulysses, hybrid), compute vs communication."""
from __future__ import annotations

import json
import re

import click
from rich.console import Console
from rich.table import Table

from ..errors import AttnsimError
from ..hwmodels import load_profile
from ..hwmodels.contextpar import LAYOUTS, SCHEMES, CPResult, Cluster, price_context_parallel
from ..hwmodels.interconnect import list_interconnects, load_interconnect
from . import fmt
from .options import FLAG_NAMES, WORKLOAD_OPTIONS, spec_from_flags


def _workload_options(fn):
    for option in reversed(WORKLOAD_OPTIONS):
        fn = option(fn)
    return fn


@click.command("cp")
@click.option("--gpus", type=int, default=8, show_default=True, help="Devices the attention is split across.")
@click.option("--gpus-per-node", type=int, default=8, show_default=True, help="Devices per node (behind --intra).")
@click.option("--scheme", type=click.Choice([*SCHEMES, "all"]), default="all", show_default=True,
              help="Ring attention, DeepSpeed-Ulysses, their hybrid (USP), or all side by side.")
@click.option("--layout", type=click.Choice(LAYOUTS), default="zigzag", show_default=True,
              help="Ring token layout (causal load balance).")
@click.option("--ulysses-degree", type=int, default=None,
              help="Hybrid: devices per Ulysses group [default: the largest in-node degree the heads allow].")
@click.option("--hw", "hw_name", default="H100-SXM", show_default=True, help="Device profile name or YAML file.")
@click.option("--intra", default="NVLink4", show_default=True, help="Intra-node link: interconnect name or YAML file.")
@click.option("--inter", default="IB-NDR", show_default=True, help="Inter-node link, one NIC per GPU.")
@click.option("--case", default=None, help="Run a context-parallel paper case (its own setting; --list-cases).")
@click.option("--list-cases", is_flag=True, help="List the context-parallel cases.")
@click.option("--list-interconnects", is_flag=True, help="List the shipped interconnect profiles.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_workload_options
def cp(gpus, gpus_per_node, scheme, layout, ulysses_degree, hw_name, intra, inter, case, list_cases,
       list_interconnects, as_json, **flags) -> None:
    """Price attention split across --gpus devices: compute, communication, exposed communication."""
    console = Console()
    if list_cases or list_interconnects:
        _listing(list_cases, as_json, console)
        return
    if case:
        _run_case(case, as_json, console)
        return
    spec = spec_from_flags({k: flags[k] for k in FLAG_NAMES})
    cluster = Cluster(load_profile(hw_name), gpus, gpus_per_node, load_interconnect(intra, "--intra"),
                      load_interconnect(inter, "--inter"))
    schemes = SCHEMES if scheme == "all" else (scheme,)
    results = {}
    for s in schemes:
        try:
            results[s] = price_context_parallel(spec.workload, spec.pattern, cluster, s, layout,
                                                ulysses_degree if s == "hybrid" else None, spec.tiling)
        except AttnsimError as err:
            if len(schemes) == 1:
                raise
            results[s] = str(err)
    if all(isinstance(r, str) for r in results.values()):
        raise AttnsimError("no scheme can run this setting: " + "; ".join(f"{s}: {r}" for s, r in results.items()))
    if as_json:
        click.echo(json.dumps({s: r.to_dict() if isinstance(r, CPResult) else {"error": r}
                               for s, r in results.items()}, indent=2))
        return
    console.print(f"[bold]{spec.pattern.describe()}[/] on {gpus} x {cluster.hw.name} ({gpus_per_node} per node, "
                  f"{cluster.intra.name}{', ' + cluster.inter.name if gpus > gpus_per_node else ''}) — "
                  f"{fmt.workload_line(spec.workload)}")
    _render(results, console)


def _listing(cases: bool, as_json: bool, console: Console) -> None:
    from ..cases.parallel import list_parallel_cases

    if cases:
        rows = [{"name": c.name, "title": c.title, "gpus": c.raw["cluster"]["gpus"], "hw": c.raw["cluster"]["hw"],
                 "claim": c.claim.get("value"), "metric": c.claim.get("metric")} for c in list_parallel_cases()]
        cols = ("name", "gpus", "hw", "claim", "title")
    else:
        rows = [{"name": i.name, "bandwidth_GB_per_s": i.bandwidth_bytes_per_s / 1e9, "latency_us": i.latency_s * 1e6,
                 "description": i.description} for i in list_interconnects()]
        cols = ("name", "bandwidth_GB_per_s", "latency_us", "description")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="context-parallel cases" if cases else "interconnects (per direction, per device)")
    for col in cols:
        table.add_column(col)
    for r in rows:
        table.add_row(*(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    console.print(table)


def _render(results: dict, console: Console) -> None:
    table = Table(title="Context parallelism: per-device compute vs communication")
    cols = ("scheme", "U x R", "compute", "comm", "exposed", "total", "1 GPU", "efficiency", "imbalance", "binds")
    for col in cols:
        table.add_column(col, justify="left" if col in ("scheme", "binds") else "right")
    for s, r in results.items():
        if isinstance(r, str):
            table.add_row(s, *["-"] * 8, "[red]n/a[/]")
            continue
        sp = r.split
        name = f"{s} ({sp.layout})" if sp.ring > 1 else s
        table.add_row(name, f"{sp.ulysses} x {sp.ring}", fmt.seconds(r.compute_s), fmt.seconds(r.comm_s),
                      fmt.seconds(r.exposed_comm_s), fmt.seconds(r.total_s), fmt.seconds(r.single_device_s),
                      f"{r.efficiency:.1%}", f"{r.imbalance:.3f}", r.bound_by)
    console.print(table)
    for s, r in results.items():
        if isinstance(r, str):
            console.print(f"[red]n/a[/] {s}: {r}")
    priced = {s: r for s, r in results.items() if isinstance(r, CPResult)}
    if len(priced) == 1:
        _render_stages(next(iter(priced.values())), console)
    for s, r in priced.items():
        sizes = ", ".join(f"{k} {fmt.bytes_(v)}" for k, v in r.message_bytes.items())
        console.print(f"[dim]{s}: bytes one device sends per message: {sizes or 'none'}[/]")
    console.print("[dim]Assumptions:[/]")
    for note in dict.fromkeys(n for r in priced.values() for n in r.assumptions):
        console.print(f"[dim] • {note}[/]")


def _render_stages(r: CPResult, console: Console) -> None:
    """Stages grouped by kind (a ring has one per step)."""
    groups: dict[str, list] = {}
    for st in r.stages:
        groups.setdefault(re.sub(r"ring step \d+", "ring steps", st.name), []).append(st)
    table = Table(title="Where the time goes (slowest device per stage)")
    for col in ("stage", "count", "compute", "comm", "time"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, sts in groups.items():
        table.add_row(name, str(len(sts)), fmt.seconds(sum(s.compute_s for s in sts)),
                      fmt.seconds(sum(s.comm_s for s in sts)), fmt.seconds(sum(s.time_s for s in sts)))
    console.print(table)
    ranks = r.rank_compute_s
    console.print(f"Ring ranks: compute {fmt.seconds(min(ranks))} .. {fmt.seconds(max(ranks))}; pairs per head "
                  f"{min(r.rank_pairs_per_head):,} .. {max(r.rank_pairs_per_head):,}")


def _run_case(name: str, as_json: bool, console: Console) -> None:
    from ..cases.parallel import judge_parallel, load_parallel_case

    case = load_parallel_case(name)
    verdict = judge_parallel(case)
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2))
        return
    c = case.raw["cluster"]
    console.print(f"[bold]{case.name}[/]: {case.title} (arXiv {case.raw['arxiv']}) — {c['gpus']} x {c['hw']}, "
                  f"{case.raw['pattern']}, seq {case.raw['workload']['seq']:,}, {case.raw['workload'].get('phase')}")
    _render(verdict.results, console)
    if verdict.readings:
        table = Table(title=f"Claim: {case.claim['value']}x {case.claim['metric']} ({case.claim['where']})")
        for col in ("reading", "attnsim", "verdict", "why"):
            table.add_column(col, justify="right" if col == "attnsim" else "left")
        for rd in verdict.readings:
            table.add_row(rd.name, f"{rd.value:.3g}x", rd.verdict, rd.reason)
        console.print(table)
    console.print(f"Verdict: [bold]{verdict.verdict}[/] — {verdict.reason}")
    console.print(f"[dim]Paper: \"{case.claim['quote']}\" ({case.raw['source']})[/]")
    console.print(f"[dim]{case.raw['notes']}[/]")
