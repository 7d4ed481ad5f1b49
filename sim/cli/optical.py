"""``attnsim speedup --case convsharevit`` and ``attnsim sweep-optical``: a 4f optical system's
ConvShareViT attention block next to a GPU's standard one (attnsim.cases.optical)."""
from __future__ import annotations

import json

import click
from rich.console import Console

from ..errors import AttnsimError
from ..workload import DTYPES

TARGET_CASES = ("convsharevit",)
# speedup's workload flags at these defaults leave the case's recorded setting alone
CLI_DEFAULTS = {"seq": None, "heads": 1, "head_dim": 128, "batch": 1, "dtype": "bf16"}


def _setting(flags: dict):
    from ..cases.optical import Setting

    given = {k: flags[k] for k in CLI_DEFAULTS if flags.get(k) != CLI_DEFAULTS[k]}
    return Setting(**given)


def _split(hw_names: tuple[str, ...]) -> tuple[str, str]:
    """(optical, gpu) profile names from --hw (defaults: the case's)."""
    from ..cases.optical import DEFAULT_GPU, DEFAULT_OPTICAL
    from ..hwmodels import load_profile

    optical, gpu = DEFAULT_OPTICAL, DEFAULT_GPU
    for name in hw_names:
        if load_profile(name).kind == "optical4f":
            optical = name
        else:
            gpu = name
    return optical, gpu


def run_case(case: str, hw_names: tuple[str, ...], flags: dict, as_json: bool) -> None:
    """speedup --case: only cases with a non-GPU target comparison have one."""
    if case not in TARGET_CASES:
        raise AttnsimError(f"--case {case!r}: target comparisons exist for {', '.join(TARGET_CASES)} "
                           "(other cases: attnsim cases run NAME)")
    from ..cases.optical import convsharevit_comparison, render_comparison

    optical, gpu = _split(hw_names)
    result = convsharevit_comparison(optical, gpu, _setting(flags))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        Console().print(render_comparison(result))


def _floats(flag: str, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise AttnsimError(f"{flag} {text!r}: comma-separated numbers, e.g. 60,1e3,1e6") from None
    if any(v <= 0 for v in values):
        raise AttnsimError(f"{flag} {text!r}: every value must be positive")
    return values


def _resolutions(text: str) -> tuple[tuple[int, int], ...]:
    try:
        out = tuple(tuple(int(x) for x in r.lower().split("x")) for r in text.split(","))
    except ValueError:
        out = ()
    if not out or any(len(r) != 2 or min(r) <= 0 for r in out):
        raise AttnsimError(f"--resolutions {text!r}: WIDTHxHEIGHT pairs, e.g. 1920x1080,3840x2160")
    return out


@click.command("sweep-optical")
@click.option("--hw", "optical", default=None, help="optical4f profile [default: Optical4f-LCoS].")
@click.option("--gpu", default=None, help="GPU profile to beat [default: RTX-4090].")
@click.option("--frame-rates", default=None, help="Modulator/filter/detector frame rates in Hz, e.g. 60,1e3,1e6.")
@click.option("--resolutions", default=None, help="WIDTHxHEIGHT list, e.g. 1920x1080,7680x4320.")
@click.option("--scope", type=click.Choice(["projections", "core", "block"]), default="block", show_default=True)
@click.option("--seq", type=int, default=None, help="Tokens [default: the case's 197].")
@click.option("--heads", type=int, default=None)
@click.option("--head-dim", type=int, default=None)
@click.option("--batch", type=int, default=None)
@click.option("--dtype", type=click.Choice(list(DTYPES)), default=None)
@click.option("--json", "as_json", is_flag=True)
def sweep_optical(optical, gpu, frame_rates, resolutions, scope, seq, heads, head_dim, batch, dtype, as_json):
    """Where a 4f optical system starts beating the GPU: frame rate x resolution."""
    from ..cases.optical import (DEFAULT_FRAME_RATES_HZ, DEFAULT_GPU, DEFAULT_OPTICAL, DEFAULT_RESOLUTIONS, Setting,
                                 render_sweep, sweep_optical as run_sweep)

    given = {k: v for k, v in dict(seq=seq, heads=heads, head_dim=head_dim, batch=batch, dtype=dtype).items()
             if v is not None}
    result = run_sweep(optical or DEFAULT_OPTICAL, gpu or DEFAULT_GPU, Setting(**given),
                       _floats("--frame-rates", frame_rates) if frame_rates else DEFAULT_FRAME_RATES_HZ,
                       _resolutions(resolutions) if resolutions else DEFAULT_RESOLUTIONS)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        Console().print(render_sweep(result, scope))
