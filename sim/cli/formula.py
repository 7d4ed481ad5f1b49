"""``attnsim formula``: a pattern's closed forms (sympy), as text or JSON."""
from __future__ import annotations

import json

import click
from rich.console import Console

from ..formulas import PHASES, formula as build_formula, has_closed_form_hook
from ..patterns import MLA, REGISTRY, Causal, Dense, Linear, Neighborhood, Sliding


def _symbolic_pattern(name: str, causal: bool, rank: int, mla_mode: str):
    """A representative instance: closed forms depend on the kind, never on window values."""
    if name in HOOKED:
        return REGISTRY[name].symbolic(causal, rank)
    return {"dense": lambda: Dense(), "causal": lambda: Causal(),
            "sliding": lambda: Sliding(1, causal=causal),
            "neighborhood": lambda: Neighborhood((1,) * rank, causal=(causal,) * rank),
            "mla": lambda: MLA(causal=causal, mode=mla_mode),
            "linear": lambda: Linear(causal=causal)}[name]()


# Patterns defining Pattern.closed_form / symbolic bring their own forms.
HOOKED = tuple(n for n, cls in REGISTRY.items() if has_closed_form_hook(cls))
WITH_FORMULA = ("dense", "causal", "sliding", "neighborhood", "mla", "linear", *HOOKED)
CAUSAL_BY_DEFAULT = ("mla", "linear", "hyper")  # as their --causal flags default


@click.command()
@click.argument("pattern", type=click.Choice(WITH_FORMULA))
@click.option("--phase", type=click.Choice(PHASES), default="fwd", show_default=True)
@click.option("--causal/--no-causal", default=None,
              help="The causal variant (sliding, neighborhood, moba); mla, linear and hyper are causal "
                   "unless --no-causal.")
@click.option("--rank", type=click.IntRange(1, 3), default=1, show_default=True,
              help="Token-grid dimensions (neighborhood).")
@click.option("--mla-mode", type=click.Choice(["auto", "up-project", "absorbed"]), default="auto",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the expressions as strings in JSON.")
def formula(pattern: str, phase: str, causal: bool | None, rank: int, mla_mode: str, as_json: bool) -> None:
    """Closed forms of pairs per head, matmul FLOPs, exponentials and compulsory bytes."""
    if causal is None:
        causal = pattern in CAUSAL_BY_DEFAULT
    f = build_formula(_symbolic_pattern(pattern, causal, rank, mla_mode), phase, rank)
    if as_json:
        click.echo(json.dumps({"pattern": f.pattern, "phase": f.phase,
                               "formulas": {k: str(v) for k, v in f.exprs.items()},
                               "symbols": f.symbols, "assumes": list(f.assumes)}, indent=2))
        return
    console = Console()
    console.print(f"[bold]{pattern}[/] ({phase})")
    for name, expr in f.exprs.items():
        console.print(f"  {name} = {expr}")
    console.print("[dim]where " + "; ".join(f"{k}: {v}" for k, v in f.symbols.items()) + "[/]")
    if f.assumes:
        console.print("[dim]assumes " + "; ".join(f.assumes) + "[/]")
