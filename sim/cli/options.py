"""Workload and pattern flags shared by predict, speedup (and later tiles/explain)."""
from __future__ import annotations

import functools

import click

from ..errors import AttnsimError, PatternError
from ..patterns import REGISTRY, Causal, Dense, Neighborhood, Pattern, Sliding
from ..tiles import POLICIES, TilingRequest
from ..workload import DTYPES, PHASES, Workload


def parse_dims(flag: str, text: str | None) -> tuple[int, ...] | None:
    """'30x48x80' -> (30, 48, 80); '512' -> (512,)."""
    if text is None:
        return None
    try:
        dims = tuple(int(p) for p in str(text).lower().split("x"))
    except ValueError:
        raise AttnsimError(f"{flag} {text!r}: expected integers joined by 'x', e.g. 30x48x80") from None
    if not dims or any(d <= 0 for d in dims):
        raise AttnsimError(f"{flag} {text!r}: every extent must be a positive integer")
    return dims


WORKLOAD_OPTIONS = [
    click.option("--pattern", type=click.Choice(sorted(REGISTRY)), default="dense", show_default=True,
                 help="Attention pattern."),
    click.option("--batch", type=int, default=1, show_default=True),
    click.option("--heads", type=int, default=1, show_default=True, help="Query heads."),
    click.option("--kv-heads", type=int, default=None, help="KV heads (GQA/MQA); default = --heads."),
    click.option("--seq", type=int, default=None, help="1D sequence length (decode: KV-cache length)."),
    click.option("--tokens", default=None, help="Token grid for vision/video, e.g. 30x48x80."),
    click.option("--kv-seq", type=int, default=None, help="KV length if different (cross-attention, decode cache)."),
    click.option("--head-dim", type=int, default=128, show_default=True, help="Q/K head dim."),
    click.option("--v-head-dim", type=int, default=None, help="V head dim; default = --head-dim."),
    click.option("--dtype", type=click.Choice(list(DTYPES)), default="bf16", show_default=True),
    click.option("--phase", type=click.Choice(list(PHASES)), default="fwd", show_default=True),
    click.option("--decode-tokens", type=int, default=1, show_default=True,
                 help="New query tokens per decode step (speculative decoding > 1)."),
    click.option("--window", default=None, help="Window: 512 (sliding) or 18x24x24 (neighborhood)."),
    click.option("--dilation", default=None, help="Neighborhood dilation per dim, e.g. 1x2x2."),
    click.option("--stride", default=None, help="Neighborhood (GNA) stride per dim, e.g. 16x8x8."),
    click.option("--causal", is_flag=False, flag_value="all", default=None,
                 help="Causal variant: --causal alone = every dim; per dim as 1x0x0."),
    click.option("--q-tile", default=None, help="Q tile: 128 (1D blocks) or 4x4x8 (grid boxes)."),
    click.option("--kv-tile", default=None, help="KV tile, same rank as --q-tile."),
    click.option("--policy", type=click.Choice(list(POLICIES)), default=None,
                 help="Tile iteration: block-sparse (FlexAttention), range (NATTEN FNA), dense."),
]


def workload_options(fn):
    for option in reversed(WORKLOAD_OPTIONS):
        fn = option(fn)

    @functools.wraps(fn)
    def wrapper(**kwargs):
        return fn(spec=spec_from_flags(kwargs), **{k: v for k, v in kwargs.items() if k not in FLAG_NAMES})

    return wrapper


def _option_names() -> set[str]:
    """Parameter names the WORKLOAD_OPTIONS define (read back from click, not re-typed)."""
    def probe() -> None: ...
    for option in WORKLOAD_OPTIONS:
        option(probe)
    return {param.name for param in probe.__click_params__}


FLAG_NAMES = _option_names()


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


def _refuse(name: str, **given) -> None:
    for flag, value in given.items():
        if value is not None:
            raise PatternError(f"--{flag} does not apply to --pattern {name}")


def build_pattern(f: dict) -> Pattern:
    name, window = f["pattern"], parse_dims("--window", f["window"])
    dilation, stride = parse_dims("--dilation", f["dilation"]), parse_dims("--stride", f["stride"])
    causal = parse_causal(f["causal"])
    if name in ("dense", "causal"):
        _refuse(name, window=window, dilation=dilation, stride=stride)
        if causal is not None and name == "dense":
            raise PatternError("--causal does not apply to --pattern dense: use --pattern causal")
        return Causal() if name == "causal" else Dense()
    if window is None:
        raise PatternError(f"--pattern {name} needs --window (e.g. 512, or 18x24x24 on a grid)")
    if name == "sliding":
        _refuse(name, dilation=dilation, stride=stride)
        if len(window) != 1:
            raise PatternError("--window for sliding is one number (keys per query), e.g. 4096")
        if causal is not None and len(causal) != 1:
            raise PatternError("--causal for sliding takes no per-dim value: use --causal alone")
        return Sliding(window=window[0], causal=bool(causal and causal[0]))
    return Neighborhood(window=window, dilation=dilation or (1,), stride=stride or (1,),
                        causal=causal or (False,))


def build_tiling(f: dict, wl: Workload, pattern: Pattern) -> TilingRequest:
    """The tile flags; what they leave unset is the device's default (known once --hw is)."""
    request = TilingRequest(parse_dims("--q-tile", f["q_tile"]), parse_dims("--kv-tile", f["kv_tile"]),
                            f["policy"])
    request.resolve(wl, pattern)  # shape errors surface now, before any device is loaded
    return request


def spec_from_flags(f: dict):
    """Flags -> (workload, pattern, tiling), validated (raises AttnsimError on bad input)."""
    wl, pattern = build_workload(f), build_pattern(f)
    pattern.check(wl)
    return wl, pattern, build_tiling(f, wl, pattern)
