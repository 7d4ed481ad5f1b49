"""``attnsim model``: every attention layer of a model config, priced (docs/models.md)."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..hwmodels import load_profile
from ..modelcfg import load_model
from ..models import SUBSTITUTE_LAYERS, ModelPrice, Setting, index_ranges, price_model, to_dict
from ..spec import parse_dims
from ..workload import DTYPES, PHASES
from . import fmt


@click.command()
@click.argument("config")
@click.option("--hw", "hw_name", default="H100-SXM", show_default=True, help="Profile name or YAML file.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--context", type=int, default=None,
              help="Language models: sequence length (decode: KV-cache length). Required for them.")
@click.option("--tokens", default=None, help="DiTs: token grid replacing the config's, e.g. 33x45x80.")
@click.option("--phase", type=click.Choice(list(PHASES)), default="fwd", show_default=True)
@click.option("--decode-tokens", type=int, default=1, show_default=True,
              help="New query tokens per decode step.")
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="bf16", show_default=True)
@click.option("--substitute", default=None, metavar='"PATTERN FLAGS..."',
              help='Price the layers with this pattern instead, e.g. "sliding --window 4096 --causal" '
                   'or "neighborhood --window 13x13x13".')
@click.option("--substitute-layers", type=click.Choice(list(SUBSTITUTE_LAYERS)), default="full",
              show_default=True, help="Which layers --substitute replaces: full-attention layers, or all.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def model(config: str, hw_name: str, batch: int, context: int | None, tokens: str | None, phase: str,
          decode_tokens: int, dtype: str, substitute: str | None, substitute_layers: str, as_json: bool) -> None:
    """Price every attention layer of CONFIG: a Hugging Face config.json, a DiT YAML
    (docs/models.md), or the name of a config shipped in cases/models/ (e.g. llama-3.1-8b)."""
    spec = load_model(config)
    setting = Setting(batch=batch, phase=phase, dtype=dtype, context=context, decode_tokens=decode_tokens,
                      tokens=parse_dims("--tokens", tokens))
    priced = price_model(spec, load_profile(hw_name), setting, substitute, substitute_layers)
    if as_json:
        click.echo(json.dumps(to_dict(priced), indent=2))
    else:
        render(priced, Console())


def render(m: ModelPrice, console: Console) -> None:
    s, sub = m.setting, m.substitute is not None
    shape = (f"context {s.context}" + (f", {s.decode_tokens} new token(s)" if s.phase == "decode" else "")
             if m.spec.family == "llm" else "x".join(map(str, s.tokens or m.spec.grid)) + " tokens")
    console.print(f"[bold]{m.spec.name}[/] on [bold]{m.hw.name}[/] — {len(m.spec.layers)} attention layers, "
                  f"batch {s.batch}, {shape}, {s.dtype} {s.phase}")
    table = Table(title="Attention time per layer kind" + (f" — substitute: {m.substitute}" if sub else ""))
    # with a substitute the priced pattern is in the title and the columns go to the totals
    columns = ["kind", "count", "layers"] + (["total", "new total", "speedup", "FLOP bound"] if sub
                                             else ["pattern", "each", "total"])
    for col in columns:
        table.add_column(col, justify="left" if col in ("kind", "layers", "pattern") else "right",
                         no_wrap=col not in ("layers", "pattern"))  # long index lists wrap
    for k in m.kinds:
        row = [k.layer.label, str(len(k.layers)), index_ranges(k.layers)]
        total = fmt.seconds(len(k.layers) * k.time_each_s)
        if not sub:
            row += [k.pattern.describe(), fmt.seconds(k.time_each_s), total]
        elif k.substitute is None:
            row += [total, "kept", "1.00x", "-"]
        else:
            row += [total, fmt.seconds(len(k.layers) * k.substituted_each_s), fmt.ratio(k.speedup),
                    fmt.ratio(k.flop_bound)]
        table.add_row(*row)
    console.print(table)
    line = f"Model attention time: [bold]{fmt.seconds(m.total_s)}[/]"
    if sub:
        line += (f" → [bold]{fmt.seconds(m.substituted_total_s)}[/] with the substitute, speedup "
                 f"[bold]{fmt.ratio(m.speedup)}[/]")
    console.print(line + f" ({m.predictions} distinct prediction{'s' if m.predictions != 1 else ''})")
    console.print("[dim]Assumptions:[/]")
    for note in m.notes:
        console.print(f"[dim] • {note}[/]")
