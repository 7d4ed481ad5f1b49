"""Data files shipped inside the package (profiles, cases, model configs, sweep specs)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_files(package: str, folder: str = "", suffixes: tuple[str, ...] = (".yaml",)) -> dict[str, Path]:
    """File stem -> path of the files with ``suffixes`` in ``package``'s ``folder``."""
    root = resources.files(package)
    root = root.joinpath(folder) if folder else root
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(suffixes)}


def shipped_or_file(name_or_path: str, shipped: dict[str, Path]) -> Path | str | None:
    """The shipped file named ``name_or_path`` (case-insensitive), else ``name_or_path`` itself
    when it looks like a YAML file or exists, else None (the caller names the flag and the fix)."""
    by_lower = {k.lower(): v for k, v in shipped.items()}
    if name_or_path.lower() in by_lower:
        return by_lower[name_or_path.lower()]
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).exists():
        return name_or_path
    return None
