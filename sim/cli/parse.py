"""Parsing of the CLI's compound values (grids, per-dimension flags)."""
from __future__ import annotations

from ..errors import AttnsimError


def parse_dims(flag: str, text: str | None, minimum: int = 1) -> tuple[int, ...] | None:
    """'30x48x80' -> (30, 48, 80); '512' -> (512,)."""
    if text is None:
        return None
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
