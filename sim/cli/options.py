"""Workload and pattern flags shared by predict, speedup (and later tiles/explain)."""
from __future__ import annotations

import functools
from typing import NamedTuple

import click

from ..errors import AttnsimError
from ..patterns import REGISTRY, Causal, Dense, Pattern
from ..spec import build_pattern, build_workload, parse_dims
from ..tiles import POLICIES, TilingRequest
from ..workload import DTYPES, PHASES, Workload
from .pattern_flags import PATTERN_OPTIONS


BASELINES = {"dense": Dense, "causal": Causal}

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
    *PATTERN_OPTIONS,
    click.option("--baseline", type=click.Choice(sorted(BASELINES)), default="dense", show_default=True,
                 help="What the speedups compare against (causal: full causal attention)."),
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
        # a paper case (speedup --case) brings its own setting: hand the raw flags on instead
        spec = kwargs if kwargs.get("case") else spec_from_flags(kwargs)
        return fn(spec=spec, **{k: v for k, v in kwargs.items() if k not in FLAG_NAMES})

    return wrapper


def _option_names() -> set[str]:
    """Parameter names the WORKLOAD_OPTIONS define (read back from click, not re-typed)."""
    def probe() -> None: ...
    for option in WORKLOAD_OPTIONS:
        option(probe)
    return {param.name for param in probe.__click_params__}


FLAG_NAMES = _option_names()


def build_tiling(f: dict, wl: Workload, pattern: Pattern) -> TilingRequest:
    """The tile flags; what they leave unset is the device's default (known once --hw is)."""
    request = TilingRequest(parse_dims("--q-tile", f["q_tile"]), parse_dims("--kv-tile", f["kv_tile"]),
                            f["policy"])
    if not pattern.tileable:
        if request != TilingRequest():
            raise AttnsimError(f"--pattern {pattern.name} has a data-dependent mask and no tile counts: "
                               "drop --q-tile/--kv-tile/--policy")
        return request
    request.resolve(wl, pattern)  # shape errors surface now, before any device is loaded
    return request


class Spec(NamedTuple):
    workload: Workload
    pattern: Pattern
    tiling: TilingRequest
    baseline: Pattern  # what "speedup vs dense" compares against


def spec_from_flags(f: dict) -> Spec:
    """Flags -> Spec, validated (raises AttnsimError on bad input)."""
    wl, pattern = build_workload(f), build_pattern(f)
    pattern.check(wl)
    baseline = BASELINES[f["baseline"]]()
    baseline.check(wl)
    return Spec(wl, pattern, build_tiling(f, wl, pattern), baseline)
