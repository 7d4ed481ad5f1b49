"""Dense, causal, sliding-window and neighborhood attention."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import PatternError
from ..workload import Workload
from .axes import BandAxis, BlockAxis, DenseAxis, NeighborhoodAxis
from .base import AxisLayout, Pattern
from .graph import attention_forms

BOTTOM_RIGHT = ("with q_len != kv_len the mask is aligned bottom-right (FlashAttention-2 >= 2.1 "
                "convention): query i sits at key position i + kv_len - q_len")
FLATTENED = "on a token grid the 1D mask applies to the row-major flattened sequence"


def _flat(wl: Workload, rule) -> AxisLayout:
    return AxisLayout((wl.q_len,), (wl.kv_len,), (rule,))


def ramp_sum(sp, x, hi):
    """``sum_{j <= x} clamp(j, 0, hi)`` (integer x, hi >= 0): ``sum_{i < n} clamp(a + i, 0, hi)`` is
    ``ramp_sum(a + n - 1) - ramp_sum(a - 1)`` for every a, n (symbolic axes.clamped_arith_sum)."""
    top = sp.Min(sp.Max(x, 0), hi)
    return top * (top + 1) / 2 + hi * sp.Max(x - hi, 0)


def grid_symbols(sp, rank: int, nonnegative: str = "", **meanings: str) -> tuple[dict, dict]:
    """One integer symbol per grid dim and prefix (``L="tokens along grid dim {i}"`` gives L_0..
    L_{rank-1}), and their meanings; prefixes in ``nonnegative`` may be 0."""
    syms = {p: [sp.Symbol(f"{p}_{i}", integer=True, **{"nonnegative" if p in nonnegative else "positive": True})
                for i in range(rank)] for p in meanings}
    return syms, {f"{p}_{i}": m.format(i=i) for p, m in meanings.items() for i in range(rank)}


def grid_values(wl: Workload, flag: str, **per_dim: tuple) -> dict:
    """Values of L_i and the per-dim symbols; a form built for fewer dims than the grid (from a
    single value that broadcasts) is refused rather than mis-evaluated."""
    rank = _rank(*per_dim.values())
    if rank != len(wl.q_grid):
        raise PatternError(f"{flag}: the closed form was built for {rank} grid dims but the tokens grid "
                           f"has {len(wl.q_grid)}: give one value per dim (e.g. {'x'.join(['8'] * len(wl.q_grid))})")
    per_dim = {p: values * rank if len(values) == 1 else values for p, values in per_dim.items()}
    return {f"L_{i}": n for i, n in enumerate(wl.q_grid)} | {
        f"{p}_{i}": v for p, values in per_dim.items() for i, v in enumerate(values)}


def _rank(*per_dim: tuple) -> int:  # a single value broadcasts: rank 1
    return max(len(values) for values in per_dim)


def _no_causal(name: str, causal: bool) -> None:
    if causal:
        raise PatternError(f"--causal: --pattern {name} has no causal variant (drop --causal)")


def _alignment_notes(wl: Workload) -> list[str]:
    notes = [BOTTOM_RIGHT] if wl.q_len != wl.kv_len else []
    return notes + ([FLATTENED] if wl.grid is not None and len(wl.grid) > 1 else [])


@dataclass(frozen=True)
class Dense(Pattern):
    name = "dense"

    def check(self, wl: Workload) -> None:
        pass

    def layout(self, wl: Workload) -> AxisLayout:
        return AxisLayout(wl.q_grid, wl.kv_grid, tuple(DenseAxis() for _ in wl.q_grid))

    def params(self) -> dict:
        return {}


@dataclass(frozen=True)
class Causal(Pattern):
    name = "causal"

    def check(self, wl: Workload) -> None:
        pass

    def layout(self, wl: Workload) -> AxisLayout:
        return _flat(wl, BandAxis(left=None, right=0))

    def params(self) -> dict:
        return {}

    def assumptions(self, wl: Workload) -> list[str]:
        return _alignment_notes(wl)


@dataclass(frozen=True)
class Sliding(Pattern):
    """1D sliding window of ``window`` keys (the query's own position included).

    Causal: keys ``i-window+1 .. i``. Symmetric: ``window // 2`` keys before and
    ``window - 1 - window // 2`` after. Windows shrink at the sequence ends (unlike
    neighborhood attention, which shifts them).
    """

    window: int
    causal: bool = False
    name = "sliding"

    def check(self, wl: Workload) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window <= 0:
            raise PatternError(f"window must be a positive integer, got {self.window!r}")
        if self.window > wl.kv_len:
            kind = "causal" if self.causal else "dense"
            raise PatternError(
                f"window={self.window} is larger than the kv length {wl.kv_len}: that is plain "
                f"{kind} attention; use --pattern {kind} or a smaller --window"
            )

    def layout(self, wl: Workload) -> AxisLayout:
        if self.causal:
            return _flat(wl, BandAxis(left=self.window - 1, right=0))
        return _flat(wl, BandAxis(left=self.window // 2, right=self.window - 1 - self.window // 2))

    def params(self) -> dict:
        return {"window": self.window, "causal": self.causal}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["sliding windows shrink at the sequence ends (no shift)"] + _alignment_notes(wl)


@dataclass(frozen=True)
class Neighborhood(Pattern):
    """Generalized neighborhood attention (NATTEN semantics) on a 1–3D token grid: per-dimension
    window, dilation, stride and causal flag. A single entry applies to every dimension."""

    window: tuple[int, ...]
    dilation: tuple[int, ...] = (1,)
    stride: tuple[int, ...] = (1,)
    causal: tuple[bool, ...] = (False,)
    name = "neighborhood"

    def __post_init__(self) -> None:
        for field in ("window", "dilation", "stride", "causal"):
            value = getattr(self, field)
            object.__setattr__(self, field, (value,) if isinstance(value, (int, bool)) else tuple(value))

    def _per_dim(self, field: str, rank: int) -> tuple:
        values = tuple(getattr(self, field))
        if len(values) == 1:
            values = values * rank
        if len(values) != rank:
            raise PatternError(
                f"{field} has {len(values)} dims but the tokens grid has {rank}: give one value "
                f"per dimension (e.g. {'x'.join(['8'] * rank)}) or a single value for all"
            )
        kind = bool if field == "causal" else int
        if kind is int and all(type(v) is int and v > 0 for v in values):  # the common case, fast
            return values
        for v in values:
            bad = not isinstance(v, kind) if kind is bool else (isinstance(v, bool) or not isinstance(v, int) or v <= 0)
            if bad:
                raise PatternError(f"{field} entries must be {'0/1' if kind is bool else 'positive integers'}, got {values}")
        return values

    def check(self, wl: Workload) -> None:
        if wl.q_len != wl.kv_len:
            raise PatternError(
                "neighborhood attention is self-attention: q length must equal kv length "
                f"(got {wl.q_len} and {wl.kv_len}); drop --kv-seq"
            )
        problem = _grid_problem(self, wl.q_grid)
        if problem is not None:
            raise PatternError(problem)

    def layout(self, wl: Workload) -> AxisLayout:
        return _neighborhood_layout(self, wl.q_grid)

    def params(self) -> dict:
        return {"window": self.window, "dilation": self.dilation, "stride": self.stride,
                "causal": tuple(int(c) for c in self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        notes = ["neighborhood windows are shifted, not shrunk, at borders (NATTEN): non-causal "
                 "queries attend exactly prod(window) keys"]
        if any(self.causal):
            notes.append("causal dimensions clip the window at the start (NATTEN causal NA)")
        if any(s > 1 for s in self.stride):
            notes.append("stride groups share the window of their centre query (causal: last query)")
        return notes


@lru_cache(maxsize=4096)
def _grid_problem(p: Neighborhood, grid: tuple[int, ...]) -> str | None:
    """Why ``p`` cannot run on ``grid`` (None: it can), memoised: a prediction checks its
    pattern several times."""
    try:
        per_dim = zip(*(p._per_dim(f, len(grid)) for f in ("window", "dilation", "stride")), grid)
    except PatternError as err:
        return str(err)
    for d, (w, dil, stride, length) in enumerate(per_dim):
        if w * dil > length:
            return (f"window[{d}]={w} x dilation[{d}]={dil} exceeds tokens[{d}]={length}: "
                    "NATTEN needs window * dilation <= length in every dimension")
        if stride > w:
            return f"stride[{d}]={stride} is larger than window[{d}]={w}: NATTEN needs stride <= window"
    return None


@lru_cache(maxsize=4096)
def _neighborhood_layout(p: Neighborhood, grid: tuple[int, ...]) -> AxisLayout:
    """Per-dimension rules of ``p`` on ``grid``, memoised: counting and pricing ask for the
    layout several times per prediction."""
    per_dim = zip(*(p._per_dim(f, len(grid)) for f in ("window", "dilation", "stride", "causal")))
    rules = tuple(NeighborhoodAxis(w, d, s, c) for w, d, s, c in per_dim)
    return AxisLayout(grid, grid, rules)


@dataclass(frozen=True)
class SlidingTile(Neighborhood):
    """Sliding tile attention (STA, Zhang et al. 2025, arXiv 2502.04507): the grid is cut into
    tiles; every query of a tile attends the ``window_tiles`` tiles centred on its own (shifted
    inside the grid at borders). That is GNA with ``stride = tile`` and ``window = window_tiles x
    tile``: with odd window tiles and tile-divisible extents every window is tile-aligned, so
    with Q and KV tiles equal to the STA tile, every tile is full or empty (no masking).
    Build with :meth:`of`."""

    tile: tuple[int, ...] = ()
    name = "sliding-tile"

    @classmethod
    def of(cls, tile: tuple[int, ...], window_tiles: tuple[int, ...]) -> "SlidingTile":
        tile, window_tiles = tuple(tile), tuple(window_tiles)
        if len(window_tiles) == 1:
            window_tiles = window_tiles * len(tile)
        if len(tile) != len(window_tiles):
            raise PatternError(f"--tile {tile} and --window {window_tiles} (in tiles) need the same rank")
        return cls(window=tuple(w * t for w, t in zip(window_tiles, tile)), stride=tile, tile=tile)

    def check(self, wl: Workload) -> None:
        grid = wl.q_grid
        if len(self.tile) != len(grid):
            raise PatternError(f"--tile has {len(self.tile)} dims but the tokens grid has {len(grid)}")
        for d, (t, w, length) in enumerate(zip(self.tile, self.window, grid)):
            if length % t:
                raise PatternError(f"tokens[{d}]={length} is not a multiple of tile[{d}]={t}: sliding tile "
                                   "attention needs tile-divisible extents (pad the latent or pick another tile)")
            if (w // t) % 2 == 0:
                raise PatternError(f"window[{d}]={w // t} tiles must be odd: the window is centred on the "
                                   "query's tile")
        super().check(wl)

    def preferred_tiling(self):
        from ..tiles import Tiling  # the STA tile is the kernel's tile

        return Tiling(self.tile, self.tile, "block-sparse")

    def params(self) -> dict:
        return {"tile": self.tile, "window_tiles": tuple(w // t for w, t in zip(self.window, self.tile))}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["sliding tile attention = GNA with stride = tile, window = window_tiles x tile "
                "(tile-aligned windows: every STA tile is full or empty)"]

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "SlidingTile":
        _no_causal(cls.name, causal)
        return cls.of((1,) * rank, (1,))

    def closed_form(self, sp, s: dict, phase: str):
        # The STA reference mask (FastVideo flex_sta_ref.py) clamps the kernel centre tile into
        # the grid, as NATTEN shifts windows: every query sees exactly prod(w_i t_i) keys.
        g, meanings = grid_symbols(sp, len(self.tile), w="window of grid dim {i} in tiles (odd)",
                                   t="STA tile along grid dim {i}")
        pairs = s["N"] * sp.Mul(*(w * t for w, t in zip(g["w"], g["t"])))
        return (attention_forms(sp, s, phase, pairs, s["M"]), meanings,
                ("N = M = prod(L_i)", "L_i a multiple of t_i and w_i t_i <= L_i (as --pattern sliding-tile checks)"))

    def formula_values(self, wl: Workload) -> dict:
        return grid_values(wl, "--tile", w=tuple(w // t for w, t in zip(self.window, self.tile)), t=self.tile)


def _self_attention(wl: Workload, name: str) -> None:
    if wl.q_len != wl.kv_len:
        raise PatternError(f"--pattern {name} is self-attention: drop --kv-seq")


def _grid_tuple(value, rank: int, name: str) -> tuple[int, ...]:
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(values) == 1:
        values = values * rank
    if len(values) != rank:
        raise PatternError(f"--{name} has {len(values)} dims but the tokens grid has {rank}")
    if any(v < 0 for v in values):
        raise PatternError(f"--{name} entries must be >= 0, got {values}")
    return values


@dataclass(frozen=True)
class Swin(Pattern):
    """Swin Transformer window attention (Liu et al. 2021): non-overlapping ``window`` blocks of
    the grid; a shifted layer (``shift``, usually window // 2) cyclically shifts the grid and
    masks the wrapped windows, which splits them into segments (attnsim.patterns.axes.BlockAxis).
    """

    window: tuple[int, ...]
    shift: tuple[int, ...] = (0,)
    name = "swin"

    def check(self, wl: Workload) -> None:
        _self_attention(wl, self.name)
        grid = wl.q_grid
        window, shift = _grid_tuple(self.window, len(grid), "window"), _grid_tuple(self.shift, len(grid), "shift")
        for d, (w, s, n) in enumerate(zip(window, shift, grid)):
            if w <= 0 or n % w:
                raise PatternError(f"tokens[{d}]={n} must be a positive multiple of window[{d}]={w} "
                                   "(Swin pads the feature map to whole windows: give the padded size)")
            if s >= w:
                raise PatternError(f"shift[{d}]={s} must be smaller than window[{d}]={w}")

    def layout(self, wl: Workload) -> AxisLayout:
        grid = wl.q_grid
        rules = tuple(BlockAxis(w, 0, s) for w, s in zip(_grid_tuple(self.window, len(grid), "window"),
                                                           _grid_tuple(self.shift, len(grid), "shift")))
        return AxisLayout(grid, grid, rules)

    def tile_layout(self, wl: Workload) -> AxisLayout:
        """The layout the kernel tiles: after ``torch.roll(x, -shift)`` every window is one
        aligned block and the wrapped window is cut in two at ``L - shift`` (its mask)."""
        grid = wl.q_grid
        rules = tuple(BlockAxis(w, 0, 0, n - s if s else None) for w, s, n in
                      zip(_grid_tuple(self.window, len(grid), "window"),
                          _grid_tuple(self.shift, len(grid), "shift"), grid))
        return AxisLayout(grid, grid, rules)

    def preferred_tiling(self):
        from ..tiles import Tiling  # window attention computes each window as one dense tile

        return Tiling(tuple(self.window), tuple(self.window), "block-sparse")

    def params(self) -> dict:
        return {"window": tuple(self.window), "shift": tuple(self.shift)}

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Swin":
        _no_causal(cls.name, causal)
        return cls(window=(1,) * rank, shift=(0,) * rank)

    def closed_form(self, sp, s: dict, phase: str):
        g, meanings = grid_symbols(sp, _rank(self.window, self.shift), "s", L="tokens along grid dim {i}",
                                   k="window along grid dim {i}", s="shift along grid dim {i}")
        # per dim: L/k windows of k^2 pairs, except that a shift splits one into segments s and k - s
        pairs = sp.Mul(*(n * k - 2 * x * (k - x) for n, k, x in zip(g["L"], g["k"], g["s"])))
        return (attention_forms(sp, s, phase, pairs, s["M"]), meanings,
                ("N = M = prod(L_i)", "L_i a multiple of k_i and s_i < k_i (as --pattern swin checks)"))

    def formula_values(self, wl: Workload) -> dict:
        return grid_values(wl, "--window/--shift", k=tuple(self.window), s=tuple(self.shift))


@dataclass(frozen=True)
class Halo(Pattern):
    """HaloNet blocked local attention (Vaswani et al. 2021): queries in ``block`` blocks attend
    their block widened by ``halo`` on each side (clipped at the grid edge)."""

    block: tuple[int, ...]
    halo: tuple[int, ...]
    name = "halo"

    def check(self, wl: Workload) -> None:
        _self_attention(wl, self.name)
        grid = wl.q_grid
        for d, (b, h, n) in enumerate(zip(_grid_tuple(self.block, len(grid), "block-size"),
                                          _grid_tuple(self.halo, len(grid), "halo"), grid)):
            if b <= 0 or b > n:
                raise PatternError(f"block[{d}]={b} must be in 1..tokens[{d}]={n}")

    def layout(self, wl: Workload) -> AxisLayout:
        grid = wl.q_grid
        rules = tuple(BlockAxis(b, h, 0) for b, h in zip(_grid_tuple(self.block, len(grid), "block-size"),
                                                           _grid_tuple(self.halo, len(grid), "halo")))
        return AxisLayout(grid, grid, rules)

    def params(self) -> dict:
        return {"block": tuple(self.block), "halo": tuple(self.halo)}

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Halo":
        _no_causal(cls.name, causal)
        return cls(block=(1,) * rank, halo=(0,) * rank)

    def closed_form(self, sp, s: dict, phase: str):
        g, meanings = grid_symbols(sp, _rank(self.block, self.halo), "h", L="tokens along grid dim {i}",
                                   b="block along grid dim {i}", h="halo along grid dim {i}")
        pairs = sp.Mul(*(_halo_dim_pairs(sp, n, b, h) for n, b, h in zip(g["L"], g["b"], g["h"])))
        return (attention_forms(sp, s, phase, pairs, s["M"]), meanings,
                ("N = M = prod(L_i)", "b_i <= L_i (as --pattern halo checks)"))

    def formula_values(self, wl: Workload) -> dict:
        return grid_values(wl, "--block-size/--halo", b=tuple(self.block), h=tuple(self.halo))


def _halo_dim_pairs(sp, n, b, h):
    """Pairs along one dim: ceil(L/b) blocks (the last of r rows) each see themselves plus
    min(h, keys before) and min(h, keys after). Block j < last has j*b keys before, and block
    last-1-j has r + j*b after: those sums are arithmetic until they pass h."""
    blocks = sp.ceiling(n / b)
    full, r = blocks - 1, n - (blocks - 1) * b
    before = sp.Min(full, sp.floor(h / b) + 1)      # full blocks with j*b <= h
    after = sp.Min(full, sp.floor((h - r) / b) + 1)  # full blocks with r + j*b <= h
    own = full * b**2 + r**2
    left = b * (b * before * (before - 1) / 2 + (full - before) * h) + r * sp.Min(h, full * b)
    right = b * (after * r + b * after * (after - 1) / 2 + (full - after) * h)
    return own + left + right
