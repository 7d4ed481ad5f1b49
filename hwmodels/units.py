"""Units a profile may use, by family, with their factor to SI (decimal k=1e3, binary Ki=1024)."""
from __future__ import annotations

_DECIMAL = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}

UNITS: dict[str, dict[str, float]] = {
    "FLOP/s": {f"{p}FLOP/s": f for p, f in _DECIMAL.items() if p in ("", "G", "T", "P")},
    "op/s": {f"{p}op/s": f for p, f in _DECIMAL.items() if p in ("", "G", "T")},
    "B/s": {**{f"{p}B/s": f for p, f in _DECIMAL.items() if p in ("", "M", "G", "T")},
            **{f"{p}B/s": f for p, f in _BINARY.items() if p in ("Gi", "Ti")}},
    "bytes": {**{f"{p}B": f for p, f in _DECIMAL.items() if p != "P"},
              **{f"{p}B": f for p, f in _BINARY.items()}},
    "Hz": {"Hz": 1.0, "MHz": 1e6, "GHz": 1e9},
    "s": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9},
    "W": {"W": 1.0},
    "count": {"count": 1.0},
    "cycles": {"cycles": 1.0},
    "fraction": {"fraction": 1.0, "%": 0.01},
    "J": {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "nJ": 1e-9, "pJ": 1e-12, "fJ": 1e-15},
    "bits": {"bits": 1.0},
    "pixels": {"pixels": 1.0, "Mpixels": 1e6},
}


def to_si(family: str, unit: str) -> float | None:
    """Factor that converts ``unit`` to the family's SI unit, or None if it is not in it."""
    return UNITS[family].get(unit)


def family_of(unit: str) -> str | None:
    for family, units in UNITS.items():
        if unit in units:
            return family
    return None
