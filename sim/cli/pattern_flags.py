"""The pattern flags as click options (attnsim.spec turns their values into a Pattern)."""
from __future__ import annotations

import click

from ..patterns import REGISTRY
from ..patterns.mla import MODES as MLA_MODES

PATTERN_OPTIONS = [
    click.option("--window", default=None, help="Window: 512 (sliding) or 18x24x24 (neighborhood)."),
    click.option("--dilation", default=None, help="Neighborhood dilation per dim, e.g. 1x2x2."),
    click.option("--stride", default=None, help="Neighborhood (GNA) stride per dim, e.g. 16x8x8."),
    click.option("--causal", is_flag=False, flag_value="all", default=None,
                 help="Causal variant: --causal alone = every dim; per dim as 1x0x0; 0 = off."),
    click.option("--kv-lora-rank", type=int, default=None, help="MLA latent KV dim [default: 512]."),
    click.option("--rope-dim", type=int, default=None, help="MLA decoupled RoPE key dim [default: 64]."),
    click.option("--block-size", default=None, help="MoBA: keys per block; HaloNet: block per dim (8x8)."),
    click.option("--top-k", type=int, default=None, help="MoBA: blocks per query, own block included."),
    click.option("--chunk", type=int, default=None, help="Linear attention: chunk length [default: 64]."),
    click.option("--tile", "sta_tile", default=None,
                 help="Sliding tile attention: the tile, e.g. 6x8x8 (--window then counts tiles)."),
    click.option("--agents", type=int, default=None, help="Agent attention: agent tokens [default: 49]."),
    click.option("--shift", default=None, help="Swin: shifted-window offset per dim, e.g. 3x3."),
    click.option("--halo", default=None, help="HaloNet: halo per dim, e.g. 3x3 (with --block-size 8x8)."),
    click.option("--sinks", type=int, default=None, help="Attention sinks: initial tokens kept [default: 4]."),
    click.option("--window-blocks", type=int, default=None, help="PowerAttention: recent blocks kept [default: 1]."),
    click.option("--sink-blocks", type=int, default=None, help="PowerAttention: first blocks kept [default: 0]."),
    click.option("--sample-size", type=int, default=None, help="HyperAttention: sampled keys [default: 256]."),
    click.option("--min-seq-len", type=int, default=None, help="HyperAttention: exact below this [default: 4096]."),
    click.option("--edges", default=None, metavar="FILE",
                 help="Graph attention: edge file, one 'query key' pair per line."),
    click.option("--mla-mode", type=click.Choice(MLA_MODES), default=None,
                 help="MLA: up-project K/V (prefill) or absorbed weights (decode) [default: auto]."),
]


def _declared_options() -> list:
    """Click options for the flags patterns declare themselves (Pattern.cli_flags); a flag
    shared by several patterns gets one option whose help names each use."""
    from ..spec import LEGACY_FLAGS

    flags: dict[str, tuple[str, list[str]]] = {}
    for name, cls in REGISTRY.items():
        for flag in cls.cli_flags:
            if flag.name in LEGACY_FLAGS:  # reuse it: list it in `flags`, don't declare it
                raise TypeError(f"{name} redeclares the existing flag {flag.option}")
            kind, helps = flags.setdefault(flag.name, (flag.type, []))
            if kind != flag.type:
                raise TypeError(f"{flag.option} is declared as {kind} and {flag.type}")
            helps.append(f"{name}: {flag.help}")
    types = {"int": int, "float": float, "str": str}
    return [click.option(f"--{n.replace('_', '-')}", n, type=types[kind], default=None, help=" ".join(helps))
            for n, (kind, helps) in flags.items()]


PATTERN_OPTIONS += _declared_options()
