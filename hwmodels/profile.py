"""Load and validate hardware profiles (strict YAML: every number has a unit and a source)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from attnsim.errors import PricingError, ProfileError
from attnsim.shipped import shipped_files, shipped_or_file

from .schema import (FRACTION_FIELDS, KINDS, MATMUL_DTYPES, MATMUL_FAMILY, MATMUL_FIELD,
                     NATTEN_TILES_FIELD, QUANTITY_FIELDS, QUANTITY_KEYS, SCHEMA_VERSION,
                     TOP_LEVEL_TEXT)
from .tileconfig import FusedTiles, parse_fused_tiles
from .units import UNITS, family_of, to_si

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Quantity:
    value_si: float  # converted to the family's SI unit (FLOP/s, B/s, bytes, Hz, s, W, count)
    value: float     # as written
    unit: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    description: str
    path: str
    matmul: dict[str, Quantity]
    fields: dict[str, Quantity]
    natten_tiles: FusedTiles | None = None  # NATTEN's default tile shapes on this device

    def get(self, field: str) -> float:
        return self.fields[field].value_si

    def matmul_peak(self, dtype: str) -> float:
        if dtype not in self.matmul:
            raise PricingError(
                f"{self.name} has no dense matmul peak for dtype {dtype} "
                f"({MATMUL_FIELD}.{dtype}): use --dtype {' or '.join(self.matmul)}, or add it to "
                "the profile with its source"
            )
        return self.matmul[dtype].value_si

    def sources(self) -> dict[str, str]:
        out = {f"{MATMUL_FIELD}.{k}": q.source for k, q in self.matmul.items()}
        out.update({k: q.source for k, q in self.fields.items()})
        if self.natten_tiles:
            out[NATTEN_TILES_FIELD] = self.natten_tiles.source
        return out


_DERIVED: dict[int, tuple[Profile, dict]] = {}


def derived(hw: Profile, key, make):
    """``make()`` memoised per profile object and ``key``: constants derived from a profile's
    fields (per-SM rates, per-tile costs) that a sweep would otherwise rebuild for every
    configuration. Profiles are frozen; the entry holds the profile, so its id is not reused."""
    entry = _DERIVED.get(id(hw))
    if entry is None or entry[0] is not hw:
        if len(_DERIVED) > 64:
            _DERIVED.clear()
        entry = _DERIVED[id(hw)] = (hw, {})
    cache = entry[1]
    if key not in cache:
        if len(cache) > 4096:
            cache.clear()
        cache[key] = make()
    return cache[key]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ProfileError(
                f"duplicate key {key!r} (line {key_node.start_mark.line + 1}): "
                "keep one; YAML would silently use the last"
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _quantity(where: str, raw, family: str) -> Quantity:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a mapping {{value, unit, source}}, got {raw!r}")
    unknown = set(raw) - QUANTITY_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: value, unit, source, note")
    for key in ("value", "unit", "source"):
        if key not in raw or raw[key] in (None, ""):
            fix = {"value": "a positive number",
                   "unit": f"one of {', '.join(UNITS[family])}",
                   "source": "datasheet/paper name, 'derived: ...' or 'measured: <how>'"}[key]
            raise ProfileError(f"{where}: missing '{key}': add {fix}")
    value, unit = raw["value"], str(raw["unit"])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfileError(f"{where}.value: expected a number, got {value!r}")
    if not value > 0:
        raise ProfileError(f"{where}.value: must be positive, got {value}")
    factor = to_si(family, unit)
    if factor is None:
        found = family_of(unit)
        hint = f" ({unit} is a {found} unit)" if found else ""
        raise ProfileError(f"{where}.unit: {unit!r} is not a {family} unit{hint}; use one of "
                           f"{', '.join(UNITS[family])}")
    return Quantity(value * factor, value, unit, str(raw["source"]), str(raw.get("note", "")))


def _check_top(where: str, data) -> str:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile is a YAML mapping, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ProfileError(f"{where}: schema_version must be {SCHEMA_VERSION}, got {version!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ProfileError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ProfileError(f"{where}: name must be letters, digits, '-', '_' or '.', got {name!r}")
    allowed = set(TOP_LEVEL_TEXT) | {MATMUL_FIELD} | {
        f for f, (_, _, may) in QUANTITY_FIELDS.items() if kind in may}
    if kind == "gpu":
        allowed.add(NATTEN_TILES_FIELD)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ProfileError(f"{where}: unknown field {unknown[0]!r} for kind {kind}; allowed: "
                           f"{', '.join(sorted(allowed))}")
    return kind


def parse_profile(data, where: str) -> Profile:
    """Validate parsed YAML and build a Profile; ``where`` names the file in errors."""
    kind = _check_top(where, data)
    raw_mm = data.get(MATMUL_FIELD)
    if not isinstance(raw_mm, dict) or not raw_mm:
        raise ProfileError(f"{where}: {MATMUL_FIELD} must map at least one of "
                           f"{', '.join(MATMUL_DTYPES)} to a dense peak")
    matmul = {}
    for dtype, raw in raw_mm.items():
        if dtype not in MATMUL_DTYPES:
            raise ProfileError(f"{where}: {MATMUL_FIELD}.{dtype}: unknown dtype; use one of "
                               f"{', '.join(MATMUL_DTYPES)}")
        matmul[dtype] = _quantity(f"{where}: {MATMUL_FIELD}.{dtype}", raw, MATMUL_FAMILY)
    fields = {}
    for field, (family, required, _) in QUANTITY_FIELDS.items():
        if field in data:
            fields[field] = _quantity(f"{where}: {field}", data[field], family)
            if field in FRACTION_FIELDS and fields[field].value_si > 1:
                raise ProfileError(f"{where}: {field}.value: a fraction must be at most 1 "
                                   f"(or 100 %), got {fields[field].value} {fields[field].unit}")
        elif kind in required:
            raise ProfileError(f"{where}: missing required field {field!r} for kind {kind} "
                               f"(a {{value, unit, source}} in {family})")
    tiles = data.get(NATTEN_TILES_FIELD)
    tiles = parse_fused_tiles(f"{where}: {NATTEN_TILES_FIELD}", tiles) if tiles is not None else None
    profile = Profile(name=data["name"], kind=kind, description=str(data.get("description", "")),
                      path=where, matmul=matmul, fields=fields, natten_tiles=tiles)
    if kind == "optical4f":  # cross-field checks (detector covers the modulator, ...)
        from .optical import check_optical_profile

        check_optical_profile(profile)
    return profile


def load_profile_file(path: str | Path) -> Profile:
    return parse_profile(read_strict_yaml(path), str(path))


def read_strict_yaml(path: str | Path):
    """A hardware YAML file (profile or interconnect) with the strict loader: duplicate keys and
    unreadable or invalid files are one-line ProfileErrors naming the file (and the line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ProfileError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except ProfileError as err:
        raise ProfileError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ProfileError(f"{path}:{line} invalid YAML ({getattr(err, 'problem', err)})") from None
    return data


def shipped_profile_paths() -> dict[str, Path]:
    """Shipped profile name (file stem) -> path."""
    return shipped_files("attnsim.hwmodels.profiles")


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name (case-insensitive), or any profile file by path."""
    shipped = shipped_profile_paths()
    path = shipped_or_file(name_or_path, shipped)
    if path is not None:
        return load_profile_file(path)
    raise ProfileError(f"--hw {name_or_path!r}: no such profile; use a YAML file path or one of "
                       f"{', '.join(sorted(shipped))} (attnsim hw list)")


def list_profiles() -> list[Profile]:
    return [load_profile_file(p) for _, p in sorted(shipped_profile_paths().items())]
