"""Number formatting for people (the JSON output keeps raw SI numbers)."""
from __future__ import annotations

_PREFIXES = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """1.4676e16, 'FLOP' -> '14.7 PFLOP'."""
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}".rstrip()


def bytes_(value: float) -> str:
    return si(value, "B")


def seconds(value: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "inf" if value == float("inf") else f"{value:.2f}x"


def workload_line(wl) -> str:
    shape = "x".join(map(str, wl.grid)) + " tokens" if wl.grid else (
        f"q={wl.q_len} kv={wl.kv_len}" if wl.q_len != wl.kv_len else f"seq={wl.q_len}")
    heads = f"heads={wl.q_heads}" + (f" kv_heads={wl.kv_heads}" if wl.kv_heads != wl.q_heads else "")
    dims = f"d={wl.qk_head_dim}" + (f"/{wl.v_head_dim}" if wl.v_head_dim != wl.qk_head_dim else "")
    return f"batch={wl.batch} {heads} {shape} {dims} {wl.dtype} {wl.phase}"
