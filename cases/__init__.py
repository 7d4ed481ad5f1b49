"""Paper cases: one YAML per paper with a performance claim (cases/papers/*.yaml, format in
cases/papers/README.md), and the verdict attnsim gives each claim."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from attnsim.errors import AttnsimError
from attnsim.shipped import shipped_files

CLAIM_TOLERANCE = 1.05  # a claim within 5 % of a bound is consistent (rounding in papers)


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    family: str
    raw: dict

    @property
    def claim(self) -> dict:
        return self.raw["claim"]


def case_paths() -> dict[str, Path]:
    return shipped_files("attnsim.cases", "papers")


def load_case(path: Path) -> Case:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise AttnsimError(f"{path}: invalid YAML ({err})") from None
    for key in ("name", "title", "family", "pattern", "workload", "hardware", "claim"):
        if key not in raw:
            raise AttnsimError(f"{path}: missing '{key}' (see cases/papers/README.md)")
    return Case(raw["name"], raw["title"], raw["family"], raw)


def load_cases(names: tuple[str, ...] = ()) -> list[Case]:
    paths = case_paths()
    unknown = [n for n in names if n not in paths]
    if unknown:
        raise AttnsimError(f"no case named {unknown[0]!r}: see `attnsim cases list`")
    return [load_case(paths[n]) for n in (names or sorted(paths))]
