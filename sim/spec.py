"""Flag values -> Workload and Pattern, shared by the CLI and the paper cases (cases/).

Every pattern names the flags it accepts; any other pattern flag given is refused with a
one-line error naming the flag, so a typo'd combination never silently prices something else.
Errors name flags as the CLI spells them (``--window``); case YAMLs use the same names.
"""
from __future__ import annotations

from functools import lru_cache

from .errors import AttnsimError, PatternError
from .patterns import (MLA, REGISTRY, Agent, Causal, Dense, Graph, Halo, Hyper, Linear, MoBA, Neighborhood, Pattern, Sliding,
                       Power, Sinks, SlidingTile, Swin)
from .workload import Workload


def parse_dims(flag: str, text: str | None, minimum: int = 1) -> tuple[int, ...] | None:
    """'30x48x80' -> (30, 48, 80); '512' -> (512,)."""
    if text is None:
        return None
    if isinstance(text, (str, int)):  # memoised: a sweep parses the same few values per config
        return _parse_dims(flag, text, minimum)
    return _parse_dims.__wrapped__(flag, text, minimum)


@lru_cache(maxsize=4096, typed=True)  # typed: True is not 1 here
def _parse_dims(flag: str, text, minimum: int) -> tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in str(text).lower().split("x"))
    except ValueError:
        raise AttnsimError(f"{flag} {text!r}: expected integers joined by 'x', e.g. 30x48x80") from None
    if not dims or any(d < minimum for d in dims):
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise AttnsimError(f"{flag} {text!r}: every extent must be {kind}")
    return dims


def parse_causal(text: str | None) -> tuple[bool, ...] | None:
    """None -> None; 'all' (bare --causal) -> (True,); '1x0x0' -> (True, False, False)."""
    if text is None:
        return None
    if text == "all":
        return (True,)
    parts = str(text).lower().split("x")
    if not all(p in ("0", "1") for p in parts):
        raise AttnsimError(f"--causal {text!r}: use --causal alone, or 0/1 per dim like 1x0x0")
    return tuple(p == "1" for p in parts)


def build_workload(f: dict) -> Workload:
    grid = parse_dims("--tokens", f["tokens"])
    common = dict(batch=f["batch"], heads=f["heads"], kv_heads=f["kv_heads"],
                  head_dim=f["head_dim"], v_head_dim=f["v_head_dim"], dtype=f["dtype"], phase=f["phase"])
    if grid is not None and f["seq"] is not None:
        raise AttnsimError("give either --seq (1D) or --tokens (grid), not both")
    if grid is not None:
        if f["kv_seq"] is not None:
            raise AttnsimError("--kv-seq does not apply to a --tokens grid (self-attention)")
        return Workload.on_grid(grid, **common)
    if f["seq"] is None:
        raise AttnsimError("missing sequence length: give --seq N (1D) or --tokens 30x48x80 (grid)")
    return Workload.sequence(f["seq"], kv_len=f["kv_seq"], decode_tokens=f["decode_tokens"], **common)


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
LEGACY_FLAGS = frozenset().union(*ACCEPTS.values())  # flags with hand-written click options
# Patterns that declare their flags themselves (Pattern.flags / from_flags): see base.Pattern.
PLUGINS = {name: cls for name, cls in REGISTRY.items() if name not in ACCEPTS}
ACCEPTS.update({name: set(cls.flags) | {f.name for f in cls.cli_flags} for name, cls in PLUGINS.items()})
PATTERN_FLAGS = set().union(*ACCEPTS.values())


# pattern -> the pattern flags it refuses, in a stable order for the error message
REFUSES = {name: sorted(PATTERN_FLAGS - accepted) for name, accepted in ACCEPTS.items()}


def _refuse_others(f: dict) -> None:
    name = f["pattern"]
    for flag in REFUSES[name]:
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


BUILDERS.update({name: cls.from_flags for name, cls in PLUGINS.items()})


def build_pattern(f: dict) -> Pattern:
    f = {**{k: None for k in PATTERN_FLAGS}, **f}  # flags no caller set read as "not given"
    _refuse_others(f)
    return BUILDERS[f["pattern"]](f)
