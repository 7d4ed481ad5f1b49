"""Flag values -> pattern parameters, shared by the patterns' ``from_flags`` (errors name the
flag as the CLI spells it)."""
from __future__ import annotations

import numpy as np

from ..errors import PatternError


def causal_switch(f: dict, pattern: str, default: bool = False) -> bool:
    """``--causal`` of a 1D pattern: on (bare or 1), off (0), ``default`` when absent."""
    from ..spec import parse_causal  # attnsim.spec imports the patterns: import at call time

    causal = parse_causal(f.get("causal"))
    if causal is not None and len(causal) != 1:
        raise PatternError(f"--causal for {pattern} is on or off: --causal or --causal 0")
    return default if causal is None else causal[0]


def int_flag(f: dict, name: str, default=None):
    """An integer flag value (case YAMLs may hold text such as "not found"); None: ``default``."""
    value = f.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PatternError(f"--{name.replace('_', '-')} must be an integer, got {value!r}")
    return int(value)


def one_block(f: dict, pattern: str, example: int = 16) -> int | None:
    """``--block-size`` as one number of tokens (None when absent)."""
    from ..spec import parse_dims

    block = parse_dims("--block-size", None if f.get("block_size") is None else str(f["block_size"]))
    if block is not None and len(block) != 1:
        raise PatternError(f"--block-size for {pattern} is one number of tokens, e.g. {example}")
    return None if block is None else block[0]


def positive_flags(**flags) -> None:
    for flag, value in flags.items():
        if value is None or value <= 0:
            raise PatternError(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
