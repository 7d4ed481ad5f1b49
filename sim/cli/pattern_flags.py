"""Pattern flags: which flags each ``--pattern`` takes, and building the pattern from them.

Every pattern names the flags it accepts; any other pattern flag given is refused with a
one-line error, so a typo'd combination never silently prices something else.
"""
from __future__ import annotations

import click

from ..errors import PatternError
from ..patterns import (MLA, Agent, Causal, Dense, Graph, Halo, Hyper, Linear, MoBA, Neighborhood, Pattern, Sliding,
                        Power, Sinks, SlidingTile, Swin)
from ..patterns.mla import MODES as MLA_MODES
from .parse import parse_causal, parse_dims

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
# pattern -> the pattern flags it accepts
ACCEPTS = {
    "dense": set(),
    "causal": set(),
    "sliding": {"window", "causal"},
    "neighborhood": {"window", "dilation", "stride", "causal"},
    "mla": {"causal", "kv_lora_rank", "rope_dim", "mla_mode"},
    "moba": {"causal", "block_size", "top_k"},
    "linear": {"causal", "chunk"},
    "graph": {"edges"},
    "sliding-tile": {"window", "sta_tile"},
    "agent": {"agents"},
    "swin": {"window", "shift"},
    "halo": {"block_size", "halo"},
    "sinks": {"window", "sinks"},
    "power": {"block_size", "window_blocks", "sink_blocks"},
    "hyper": {"block_size", "sample_size", "min_seq_len", "causal"},
}
PATTERN_FLAGS = set().union(*ACCEPTS.values())


def _refuse_others(f: dict) -> None:
    name = f["pattern"]
    for flag in sorted(PATTERN_FLAGS - ACCEPTS[name]):
        if f.get(flag) is not None:
            hint = " (use --pattern causal)" if name == "dense" and flag == "causal" else ""
            raise PatternError(f"--{flag.replace('_', '-')} does not apply to --pattern {name}{hint}")


def _window(f: dict) -> tuple[int, ...]:
    window = parse_dims("--window", f["window"])
    if window is None:
        raise PatternError(f"--pattern {f['pattern']} needs --window (e.g. 512, or 18x24x24 on a grid)")
    return window


def _one_window(f: dict) -> int:
    window = _window(f)
    if len(window) != 1:
        raise PatternError(f"--window for {f['pattern']} is one number (keys per query), e.g. 4096")
    return window[0]


def _sliding(f: dict) -> Pattern:
    window, causal = _window(f), parse_causal(f["causal"])
    if len(window) != 1:
        raise PatternError("--window for sliding is one number (keys per query), e.g. 4096")
    if causal is not None and len(causal) != 1:
        raise PatternError("--causal for sliding takes no per-dim value: use --causal alone")
    return Sliding(window=window[0], causal=bool(causal and causal[0]))


def _neighborhood(f: dict) -> Pattern:
    return Neighborhood(window=_window(f), dilation=parse_dims("--dilation", f["dilation"]) or (1,),
                        stride=parse_dims("--stride", f["stride"]) or (1,),
                        causal=parse_causal(f["causal"]) or (False,))


def _mla(f: dict) -> Pattern:
    causal = parse_causal(f["causal"])
    if causal is not None and len(causal) != 1:
        raise PatternError("--causal for mla is on or off: --causal (default) or --causal 0")
    return MLA(kv_lora_rank=f["kv_lora_rank"] if f["kv_lora_rank"] is not None else 512,
               rope_dim=f["rope_dim"] if f["rope_dim"] is not None else 64,
               causal=True if causal is None else causal[0], mode=f["mla_mode"] or "auto")


def _moba(f: dict) -> Pattern:
    causal = parse_causal(f["causal"])
    if causal is not None and len(causal) != 1:
        raise PatternError("--causal for moba is on or off: --causal or --causal 0")
    for flag in ("block_size", "top_k"):
        if f[flag] is None:
            raise PatternError(f"--pattern moba needs --{flag.replace('_', '-')} (e.g. --block-size 4096 --top-k 12)")
    block = parse_dims("--block-size", f["block_size"])
    if len(block) != 1:
        raise PatternError("--block-size for moba is one number of keys, e.g. 4096")
    return MoBA(block_size=block[0], top_k=f["top_k"], causal=bool(causal and causal[0]))


def _linear(f: dict) -> Pattern:
    causal = parse_causal(f["causal"])
    if causal is not None and len(causal) != 1:
        raise PatternError("--causal for linear is on or off: --causal (default) or --causal 0")
    return Linear(chunk=f["chunk"] if f["chunk"] is not None else 64, causal=True if causal is None else causal[0])


def _graph(f: dict) -> Pattern:
    if f["edges"] is None:
        raise PatternError("--pattern graph needs --edges FILE (one 'query key' pair per line)")
    return Graph.from_file(f["edges"])


def _sliding_tile(f: dict) -> Pattern:
    tile = parse_dims("--tile", f["sta_tile"])
    if tile is None:
        raise PatternError("--pattern sliding-tile needs --tile (e.g. 6x8x8) and --window in tiles (e.g. 3x3x3)")
    return SlidingTile.of(tile, _window(f))


def _halo(f: dict) -> Pattern:
    block, halo = parse_dims("--block-size", f["block_size"]), parse_dims("--halo", f["halo"], minimum=0)
    if block is None or halo is None:
        raise PatternError("--pattern halo needs --block-size (e.g. 8x8) and --halo (e.g. 3x3)")
    return Halo(block=block, halo=halo)


def _power(f: dict) -> Pattern:
    block = parse_dims("--block-size", f["block_size"])
    if block is None or len(block) != 1:
        raise PatternError("--pattern power needs --block-size as one number of tokens, e.g. 256")
    return Power(block[0], f["window_blocks"] if f["window_blocks"] is not None else 1,
                 f["sink_blocks"] if f["sink_blocks"] is not None else 0)


def _hyper(f: dict) -> Pattern:
    block = parse_dims("--block-size", f["block_size"]) or (256,)
    causal = parse_causal(f["causal"])
    if len(block) != 1 or (causal is not None and len(causal) != 1):
        raise PatternError("--pattern hyper takes one --block-size and --causal on or off")
    return Hyper(block[0], f["sample_size"] or 256, f["min_seq_len"] or 4096,
                 causal=True if causal is None else causal[0])


BUILDERS = {
    "dense": lambda f: Dense(),
    "causal": lambda f: Causal(),
    "sliding": _sliding,
    "neighborhood": _neighborhood,
    "mla": _mla,
    "moba": _moba,
    "linear": _linear,
    "graph": _graph,
    "sliding-tile": _sliding_tile,
    "swin": lambda f: Swin(window=_window(f), shift=parse_dims("--shift", f["shift"], minimum=0) or (0,)),
    "halo": _halo,
    "power": _power,
    "hyper": _hyper,
    "sinks": lambda f: Sinks(window=_one_window(f), sinks=f["sinks"] if f["sinks"] is not None else 4),
    "agent": lambda f: Agent(agents=f["agents"] if f["agents"] is not None else 49),
}


def build_pattern(f: dict) -> Pattern:
    _refuse_others(f)
    return BUILDERS[f["pattern"]](f)
