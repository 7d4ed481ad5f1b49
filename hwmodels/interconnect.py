"""Interconnect profiles: strict YAML like the device profiles (every number has a unit and a source).

A link is described per device and per direction, the way context parallelism uses it: a GPU sends
its message at ``bandwidth_bytes_per_s`` (times ``achievable_fraction`` where one is sourced) after a
per-message ``latency_s``. Intra-node links (NVLink behind NVSwitch, PCIe) and inter-node links
(one InfiniBand/RoCE NIC per GPU, as in DGX systems) use the same schema.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnsim.errors import ProfileError
from attnsim.shipped import shipped_files, shipped_or_file

from .profile import NAME_RE, Quantity, _quantity, read_strict_yaml

SCHEMA_VERSION = 1
KIND = "interconnect"
TOP_LEVEL_TEXT = ("schema_version", "kind", "name", "description")
# field -> (unit family, required)
FIELDS = {
    "bandwidth_bytes_per_s": ("B/s", True),   # per direction, per device
    "latency_s": ("s", True),                 # per message
    "achievable_fraction": ("fraction", False),  # of the peak, where measured
}
FOLDER = "interconnects"


@dataclass(frozen=True)
class Interconnect:
    name: str
    description: str
    path: str
    fields: dict[str, Quantity]

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Bandwidth a message gets: the peak times the sourced achievable fraction (or the peak)."""
        fraction = self.fields.get("achievable_fraction")
        return self.fields["bandwidth_bytes_per_s"].value_si * (fraction.value_si if fraction else 1.0)

    @property
    def latency_s(self) -> float:
        return self.fields["latency_s"].value_si

    def transfer_s(self, nbytes: float) -> float:
        """One message of ``nbytes`` (no message, no time)."""
        return self.latency_s + nbytes / self.bandwidth_bytes_per_s if nbytes > 0 else 0.0

    def sources(self) -> dict[str, str]:
        return {k: q.source for k, q in self.fields.items()}


def parse_interconnect(data, where: str) -> Interconnect:
    """Validate parsed YAML and build an Interconnect; ``where`` names the file in errors."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: an interconnect profile is a YAML mapping, got {type(data).__name__}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ProfileError(f"{where}: schema_version must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    if data.get("kind") != KIND:
        raise ProfileError(f"{where}: kind must be {KIND!r}, got {data.get('kind')!r} "
                           "(device profiles are loaded with --hw)")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ProfileError(f"{where}: name must be letters, digits, '-', '_' or '.', got {name!r}")
    unknown = sorted(set(data) - set(TOP_LEVEL_TEXT) - set(FIELDS))
    if unknown:
        raise ProfileError(f"{where}: unknown field {unknown[0]!r}; allowed: "
                           f"{', '.join(sorted((*TOP_LEVEL_TEXT, *FIELDS)))}")
    fields = {}
    for field, (family, required) in FIELDS.items():
        if field in data:
            fields[field] = _quantity(f"{where}: {field}", data[field], family)
        elif required:
            raise ProfileError(f"{where}: missing required field {field!r} (a {{value, unit, source}} in {family})")
    fraction = fields.get("achievable_fraction")
    if fraction is not None and fraction.value_si > 1:
        raise ProfileError(f"{where}: achievable_fraction.value: a fraction must be at most 1 (or 100 %), "
                           f"got {fraction.value} {fraction.unit}")
    return Interconnect(name, str(data.get("description", "")), where, fields)


def load_interconnect_file(path: str | Path) -> Interconnect:
    return parse_interconnect(read_strict_yaml(path), str(path))


def shipped_interconnect_paths() -> dict[str, Path]:
    """Shipped interconnect name (file stem) -> path."""
    return shipped_files("attnsim.hwmodels.profiles", FOLDER)


def load_interconnect(name_or_path: str, flag: str = "--intra") -> Interconnect:
    """A shipped interconnect by name (case-insensitive), or any interconnect file by path;
    ``flag`` is the CLI option named in the error when neither exists."""
    shipped = shipped_interconnect_paths()
    path = shipped_or_file(name_or_path, shipped)
    if path is not None:
        return load_interconnect_file(path)
    raise ProfileError(f"{flag} {name_or_path!r}: no such interconnect; use a YAML file path or one of "
                       f"{', '.join(sorted(shipped))}")


def list_interconnects() -> list[Interconnect]:
    return [load_interconnect_file(p) for _, p in sorted(shipped_interconnect_paths().items())]
