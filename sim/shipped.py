"""Data files shipped inside the package (profiles, cases, model configs, sweep specs)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_files(package: str, folder: str = "", suffixes: tuple[str, ...] = (".yaml",)) -> dict[str, Path]:
    """File stem -> path of the files with ``suffixes`` in ``package``'s ``folder``."""
    root = resources.files(package)
    root = root.joinpath(folder) if folder else root
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(suffixes)}
