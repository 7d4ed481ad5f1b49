"""Sweep specs: a YAML file naming lists or ranges for any workload, pattern, tiling or hardware
parameter; the grid is their Cartesian product, enumerated in the order the keys are written.

    level: roofline          # roofline (vectorised closed forms) or predict (full model per config)
    grid:
      hw: [H100-SXM, B200]
      pattern: sliding
      causal: all
      seq: {from: 4096, to: 131072, times: 2}      # 4096, 8192, ..., 131072
      window: {from: 256, to: 4096, step: 256}     # arithmetic, both ends included
      heads: 32
      kv_heads: [8, 32]
    plot: {x: seq, y: window, value: speedup_roofline}

Keys are the ``attnsim predict`` flag names (``kv_heads`` or ``kv-heads``) plus ``hw`` and
``baseline``. Every error names the key and the fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from .errors import AttnsimError
from .shipped import shipped_files
from .spec import PATTERN_FLAGS

WORKLOAD_KEYS = ("seq", "tokens", "kv_seq", "batch", "heads", "kv_heads", "head_dim", "v_head_dim",
                 "dtype", "phase", "decode_tokens")
TILING_KEYS = ("q_tile", "kv_tile", "policy")
OTHER_KEYS = ("hw", "baseline", "pattern")
GRID_KEYS = frozenset(WORKLOAD_KEYS + TILING_KEYS + OTHER_KEYS) | PATTERN_FLAGS
DEFAULTS = {"hw": "H100-SXM", "baseline": "dense", "pattern": "dense", "batch": 1, "heads": 1,
            "head_dim": 128, "dtype": "bf16", "phase": "fwd", "decode_tokens": 1}
LEVELS = ("roofline", "predict")
TOP_KEYS = frozenset({"level", "grid", "plot", "best", "name"})
# Grids above these sizes need --yes: a typo'd range should not start a day-long run.
CONFIRM_POINTS = {"roofline": 10**8, "predict": 10**5}
RANGE_MAX_POINTS = 10**7  # one axis longer than this is almost surely a mistake


@dataclass(frozen=True)
class Plot:
    x: str
    value: str
    y: str | None = None   # heatmap when given, else a line per value of ``series``
    series: str | None = None


@dataclass(frozen=True)
class SweepSpec:
    axes: dict[str, tuple]               # key -> values, in the spec's order
    level: str = "roofline"
    plot: Plot | None = None
    best: str = "speedup"                # column the summary ranks by (highest first; *_s: lowest)
    name: str = "sweep"
    fixed: dict = field(default_factory=dict)  # defaults the grid does not set

    @cached_property
    def base_flags(self) -> dict:
        """The flags every point shares, unset ones None (as click would give them)."""
        f = {k: None for k in ("seq", "tokens", "kv_seq", "kv_heads", "v_head_dim", "q_tile", "kv_tile", "policy")}
        f.update({k: None for k in PATTERN_FLAGS})
        f.update(self.fixed)
        return f

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def points(self) -> int:
        return math.prod(self.shape)

    def value(self, key: str, coords: dict):
        """The value of ``key`` at one grid point (``coords``: axis -> index)."""
        if key in self.axes:
            return self.axes[key][coords[key]]
        return self.fixed.get(key)

    def check_size(self, yes: bool) -> None:
        limit = CONFIRM_POINTS[self.level]
        if self.points > limit and not yes:
            raise AttnsimError(f"the grid has {self.points:,} points (> {limit:,} at level {self.level}): "
                               "shrink a range, or pass --yes to run it anyway")


def _key(raw) -> str:
    return str(raw).replace("-", "_")


def _range(key: str, spec: dict) -> tuple:
    unknown = set(spec) - {"from", "to", "step", "times", "num", "scale"}
    if unknown:
        raise AttnsimError(f"grid.{key}: unknown range field {sorted(unknown)[0]!r}: use from/to with step, "
                           "times or num")
    if "from" not in spec or "to" not in spec:
        raise AttnsimError(f"grid.{key}: a range needs 'from' and 'to', e.g. {{from: 1024, to: 65536, times: 2}}")
    lo, hi = spec["from"], spec["to"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
        raise AttnsimError(f"grid.{key}: 'from' and 'to' must be numbers")
    if hi < lo:
        raise AttnsimError(f"grid.{key}: empty range (to {hi} < from {lo}): swap them")
    given = [k for k in ("step", "times", "num") if k in spec]
    if len(given) != 1:
        raise AttnsimError(f"grid.{key}: give exactly one of step (arithmetic), times (geometric) or num (count)")
    if "step" in spec:
        step = spec["step"]
        if not step or step <= 0 or (hi - lo) / step + 1 > RANGE_MAX_POINTS:
            raise AttnsimError(f"grid.{key}: step must be > 0 and give at most {RANGE_MAX_POINTS:,} values")
        values = [lo + i * step for i in range(int((hi - lo) // step) + 1)]
    elif "times" in spec:
        times = spec["times"]
        if not isinstance(times, (int, float)) or times <= 1 or lo <= 0:
            raise AttnsimError(f"grid.{key}: times must be > 1 and from > 0 (geometric range)")
        values, v = [], lo
        while v <= hi * (1 + 1e-12):
            values.append(v)
            v *= times
    else:
        num = spec["num"]
        if not isinstance(num, int) or not 1 <= num <= RANGE_MAX_POINTS:
            raise AttnsimError(f"grid.{key}: num must be an integer in 1..{RANGE_MAX_POINTS:,}")
        scale = spec.get("scale", "linear")
        if scale not in ("linear", "log"):
            raise AttnsimError(f"grid.{key}: scale must be linear or log")
        if scale == "log" and lo <= 0:
            raise AttnsimError(f"grid.{key}: a log range needs from > 0")
        values = [lo * (hi / lo) ** (i / max(num - 1, 1)) if scale == "log" else lo + (hi - lo) * i / max(num - 1, 1)
                  for i in range(num)]
    if all(isinstance(v, int) for v in (lo, hi)) and all(isinstance(spec.get(k, 1), int) for k in ("step", "times")):
        values = list(dict.fromkeys(int(round(v)) for v in values))
    return tuple(values)


def _axis(key: str, raw) -> tuple:
    if isinstance(raw, dict):
        return _range(key, raw)
    values = tuple(raw) if isinstance(raw, list) else (raw,)
    if not values:
        raise AttnsimError(f"grid.{key}: empty list: give at least one value")
    if len(set(map(repr, values))) != len(values):
        raise AttnsimError(f"grid.{key}: repeated values in {list(values)}: list each once")
    for v in values:
        if isinstance(v, (list, dict)):
            raise AttnsimError(f"grid.{key}: each value is a number or a string, got {v!r}")
    if key == "causal":  # YAML true/false mean the CLI's bare --causal / --causal 0
        values = tuple({True: "all", False: "0"}.get(v, v) if isinstance(v, bool) else v for v in values)
    return values


def parse_spec(doc: dict, source: str = "spec") -> SweepSpec:
    if not isinstance(doc, dict):
        raise AttnsimError(f"{source}: a sweep spec is a mapping with a 'grid:' section")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise AttnsimError(f"{source}: unknown key {sorted(unknown)[0]!r}: use {', '.join(sorted(TOP_KEYS))}")
    level = doc.get("level", "roofline")
    if level not in LEVELS:
        raise AttnsimError(f"{source}: level {level!r}: use {' or '.join(LEVELS)}")
    grid = doc.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise AttnsimError(f"{source}: missing 'grid:' mapping of parameter -> value, list or range")
    axes: dict[str, tuple] = {}
    for raw_key, raw in grid.items():
        key = _key(raw_key)
        if key not in GRID_KEYS:
            raise AttnsimError(f"{source}: unknown grid key {raw_key!r}: use attnsim predict's flag names "
                               "(seq, tokens, heads, window, ...) or hw / baseline")
        if key in axes:
            raise AttnsimError(f"{source}: grid key {raw_key!r} given twice")
        axes[key] = _axis(key, raw)
    if level == "roofline" and set(axes) & set(TILING_KEYS):
        raise AttnsimError(f"{source}: grid.{sorted(set(axes) & set(TILING_KEYS))[0]} is a tiling key: tiles "
                           "only matter at level: predict")
    if "seq" not in axes and "tokens" not in axes:
        raise AttnsimError(f"{source}: the grid needs seq (1D) or tokens (grid), e.g. seq: [4096, 8192]")
    fixed = {k: v for k, v in DEFAULTS.items() if k not in axes}
    return SweepSpec(axes, level, _plot(doc.get("plot"), axes, source), str(doc.get("best", "speedup")),
                     str(doc.get("name", Path(source).stem)), fixed)


def _plot(raw, axes: dict, source: str) -> Plot | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "x" not in raw or "value" not in raw:
        raise AttnsimError(f"{source}: plot needs x and value (and y for a heatmap, or series for lines)")
    unknown = set(raw) - {"x", "y", "value", "series"}
    if unknown:
        raise AttnsimError(f"{source}: unknown plot key {sorted(unknown)[0]!r}: use x, y, value, series")
    for k in ("x", "y", "series"):
        if raw.get(k) is not None and _key(raw[k]) not in axes:
            raise AttnsimError(f"{source}: plot.{k} {raw[k]!r} is not a swept grid key ({', '.join(axes)})")
    return Plot(_key(raw["x"]), str(raw["value"]), _key(raw["y"]) if raw.get("y") else None,
                _key(raw["series"]) if raw.get("series") else None)


def shipped_specs() -> dict[str, Path]:
    """Sweep specs shipped in cases/sweeps/, by file stem."""
    return shipped_files("attnsim.cases", "sweeps")


def load_spec(path: str | Path) -> SweepSpec:
    """A spec file, or the name of a shipped one (``attnsim sweep sliding-window``)."""
    p = Path(path)
    if not p.is_file() and str(path) in shipped_specs():
        p = shipped_specs()[str(path)]
    if not p.is_file():
        raise AttnsimError(f"sweep spec {path}: no such file (shipped specs: {', '.join(sorted(shipped_specs()))})")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise AttnsimError(f"sweep spec {path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return parse_spec(doc, str(path))
