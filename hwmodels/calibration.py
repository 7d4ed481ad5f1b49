"""Calibration overlays: per-kernel cost coefficients fitted on measurements of one device.

An overlay lives next to its profile, in ``calibration/<profile file stem>.yaml``, and records
the data it was fitted on (database, runs, environment, train/test sizes and errors). Written by
``attnsim calibrate``; read by ``attnsim predict --kernel`` (which says when it used one).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import ProfileError
from .kernelcost import FEATURES
from .profile import Profile

OVERLAY_SCHEMA = 1
OVERLAY_DIR = "calibration"


def overlay_path(profile: Profile) -> Path:
    return _overlay_path_of(profile.path)


@lru_cache(maxsize=256)
def _overlay_path_of(profile_path: str) -> Path:
    path = Path(profile_path)
    return path.parent / OVERLAY_DIR / f"{path.stem}.yaml"


_LOADED: dict[tuple[str, str], tuple[tuple, "Overlay"]] = {}  # (overlay, profile) -> (stamp, parsed)


@dataclass(frozen=True)
class Overlay:
    path: Path
    profile: str
    kernels: dict[str, dict[str, float]]   # kernel -> feature -> seconds per unit per thread
    fitted_on: dict
    errors: dict[str, dict]                # kernel -> {"train": {...}, "test": {...}}


def load_overlay(profile: Profile) -> Overlay | None:
    """The overlay next to ``profile``, or None; parsed once per file version (sweeps price
    thousands of points on one profile)."""
    path = overlay_path(profile)
    try:
        st = os.stat(path)
    except OSError:
        return None
    key, stamp = (str(path), profile.name), (st.st_mtime_ns, st.st_size, st.st_ino)
    if key not in _LOADED or _LOADED[key][0] != stamp:
        _LOADED[key] = (stamp, _parse_overlay(path, profile))
    return _LOADED[key][1]


def _parse_overlay(path: Path, profile: Profile) -> Overlay:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: invalid calibration YAML ({err}); re-run attnsim calibrate") from None
    if not isinstance(raw, dict) or raw.get("schema_version") != OVERLAY_SCHEMA:
        raise ProfileError(f"{path}: not a schema-{OVERLAY_SCHEMA} calibration overlay; re-run attnsim calibrate")
    if raw.get("profile") != profile.name:
        raise ProfileError(f"{path}: fitted for profile {raw.get('profile')!r}, not {profile.name!r}")
    kernels = {}
    for name, entry in (raw.get("kernels") or {}).items():
        coeffs = entry.get("coefficients") or {}
        missing = [f for f in FEATURES if f not in coeffs]
        if missing:
            raise ProfileError(f"{path}: kernels.{name}.coefficients lacks {missing[0]}; re-run attnsim calibrate")
        kernels[name] = {f: float(coeffs[f]) for f in FEATURES}
    return Overlay(path, profile.name, kernels, raw.get("fitted_on") or {},
                   {k: {s: v.get(s) for s in ("train", "test")} for k, v in (raw.get("kernels") or {}).items()})


def write_overlay(profile: Profile, kernels: dict[str, dict], fitted_on: dict, out: Path | None = None) -> Path:
    """Write atomically (temporary file, then rename)."""
    path = out or overlay_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"schema_version": OVERLAY_SCHEMA, "profile": profile.name, "fitted_on": fitted_on, "kernels": kernels}
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
    return path
