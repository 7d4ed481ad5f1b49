"""The pattern interface: a named, parameterised product of per-dimension rules."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..workload import Workload

BRUTE_FORCE_LIMIT = 1 << 24  # (query, key) pairs a materialised test mask may have


@dataclass(frozen=True)
class Flag:
    """A pattern flag the CLI offers (``--query-heads``); ``name`` is the Python spelling
    (``query_heads``), ``type`` one of "int", "float", "str" (str for 'x'-joined dims)."""

    name: str
    type: str
    help: str

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class AxisLayout:
    """How a pattern sees the tokens: per-dimension extents and one rule per dimension."""

    q_extents: tuple[int, ...]
    kv_extents: tuple[int, ...]
    rules: tuple


class Pattern(ABC):
    """A mask-expressible attention pattern.

    Subclasses name themselves, validate their parameters against a workload (raising
    :class:`PatternError` with the field and the fix), and give their per-dimension rules.
    Counting is shared: products of the rules' closed forms.
    """

    name: str = ""
    tileable: bool = True  # False: data-dependent masks (top-k routing) have no tile counts

    @abstractmethod
    def check(self, wl: Workload) -> None:
        """Raise PatternError if the parameters cannot apply to ``wl``."""

    @abstractmethod
    def layout(self, wl: Workload) -> AxisLayout:
        """Per-dimension rules; call ``check`` first."""

    @abstractmethod
    def params(self) -> dict:
        """Parameters for JSON output and reports."""

    def assumptions(self, wl: Workload) -> list[str]:
        return []

    # -- how kernels tile it (defaults: the pattern's own per-dimension layout) -----------
    edge_tiled: bool = False  # True: the pattern counts its own 1D block rows (tile_rows)

    def tile_layout(self, wl: Workload) -> AxisLayout:
        """The layout the kernel tiles; a permuted one where the kernel moves tokens first."""
        return self.layout(wl)

    def preferred_tiling(self):
        """The tiling the pattern's own kernel uses (e.g. STA or Swin windows), or None."""
        return None

    def tile_rows(self, wl: Workload, tq: int, tk: int) -> np.ndarray:
        """Per Q block, the AxisTiles columns for 1D blocks (only when ``edge_tiled``)."""
        raise NotImplementedError

    def op_graph(self, wl: Workload, pairs: int):
        """Multi-op variants return a networkx graph of :class:`attnsim.patterns.opgraph.Op`
        (their FLOPs and bytes come from it); a single fused attention kernel returns None."""
        return None

    # -- plugin hooks: patterns declare their CLI flags and closed forms themselves -------
    flags: frozenset[str] = frozenset()  # pattern flags accepted (Python names, e.g. "top_k")
    cli_flags: tuple[Flag, ...] = ()      # flags this pattern adds to the CLI

    @classmethod
    def from_flags(cls, f: dict) -> "Pattern":
        """Build from flag values (None = not given); errors name the flag and the fix."""
        raise NotImplementedError(f"{cls.__name__} has no from_flags")

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Pattern | None":
        """A representative instance for ``attnsim formula`` (None: no closed form)."""
        return None

    def closed_form(self, sp, sym: dict, phase: str) -> tuple[dict, dict, tuple[str, ...]]:
        """(exprs, meanings, assumes): sympy expressions for at least ``pairs_per_head``,
        ``matmul_flops``, ``exp`` and ``compulsory_bytes``, built from the standard symbols
        ``sym`` (B, H, Hkv, N, M, D, Dv, e, eo) and the pattern's own (named in ``meanings``,
        valued by :meth:`formula_values`); ``assumes`` are the conditions the form needs."""
        raise NotImplementedError

    def formula_values(self, wl: Workload) -> dict:
        """Values of the pattern's own closed-form symbols on ``wl``."""
        return {}

    def effective_workload(self, wl: Workload) -> Workload:
        """The workload the pattern's kernel runs, when it differs from the user's (e.g. SQA
        runs fewer query heads); the dense baseline keeps the user's."""
        return wl

    def describe(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params().items())
        return f"{self.name}({args})" if args else self.name

    # -- exact counts (products of per-dimension closed forms) --------------------------
    def pairs_per_head(self, wl: Workload) -> int:
        lay = self.layout(wl)
        return math.prod(r.pairs(a, b) for r, a, b in zip(lay.rules, lay.q_extents, lay.kv_extents))

    def touched_keys(self, wl: Workload) -> int:
        """Keys attended by at least one query (per KV head): what must be read at least once."""
        lay = self.layout(wl)
        return math.prod(
            r.touched_keys(a, b) for r, a, b in zip(lay.rules, lay.q_extents, lay.kv_extents)
        )

    # -- brute-force reference (tests only) ---------------------------------------------
    def mask(self, wl: Workload) -> np.ndarray:
        """The full boolean ``(q_len, kv_len)`` mask over flattened positions: O(N²), tests only."""
        if wl.q_len * wl.kv_len > BRUTE_FORCE_LIMIT:
            raise MemoryError(f"mask of {wl.q_len}x{wl.kv_len} is too large to materialise")
        lay = self.layout(wl)
        q_coords = np.unravel_index(np.arange(math.prod(lay.q_extents)), lay.q_extents)
        k_coords = np.unravel_index(np.arange(math.prod(lay.kv_extents)), lay.kv_extents)
        out = np.ones((len(q_coords[0]), len(k_coords[0])), dtype=bool)
        for rule, qc, kc, lq, lkv in zip(lay.rules, q_coords, k_coords, lay.q_extents, lay.kv_extents):
            out &= rule.keep(qc[:, None], kc[None, :], lq, lkv)
        return out


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)
