"""Evaluate a slice of a sweep grid: vectorised closed forms where they exist, exact otherwise.

*Roofline level*: rows whose pattern has a complete closed form (a single fused mask kernel:
pairs, matmul FLOPs, exponentials and compulsory bytes from ``attnsim.formulas``, the other
softmax FLOPs and launches from the mask-kernel rule of ``attnsim.counting``; or a multi-op
pattern whose form also gives those two, MLA and linear attention) are evaluated as
numpy arrays from the lambdified sympy forms, grouped by everything that changes a form's shape
(pattern type and its non-numeric flags, phase, grid rank, dtype, hardware). Validity checks and
the pattern's own symbol values are computed once per distinct (pattern, lengths, head dims),
not per row. Every other row (other multi-op patterns, forms with no closed form,
systolic/optical targets) runs the exact count and price, one config at a time — same numbers,
slower.

*Predict level*: every row gets ``attnsim.predict``'s numbers (tile counts, tile-level or
calibrated kernel model), as the CLI would; rows the GPU tile model prices compute only the
sweep's columns, without predict's report objects (``attnsim.sweep_tile``).
"""
from __future__ import annotations

import time
from dataclasses import fields
from functools import lru_cache
from operator import itemgetter

import numpy as np

from .counting import BWD_SOFTMAX_OPS_PER_PAIR, FWD_SOFTMAX_OPS_PER_PAIR, count
from .errors import AttnsimError
from .formulas import _lambdified, formula, values
from .hwmodels import load_profile
from .hwmodels.calibration import load_overlay
from .hwmodels.roofline import KERNELS_PER_PHASE
from .patterns import Pattern
from .predict_api import predict, price
from .spec import PATTERN_FLAGS, build_pattern, build_workload, parse_dims
from .sweep_spec import WORKLOAD_KEYS, SweepSpec
from .sweep_tile import tile_row, vectorisable
from .tiles import TilingRequest
from .workload import DTYPES, OUTPUT_BYTES, Workload

ROOFS = {"gpu": ("matmul", "exp", "softmax", "memory"), "cpu": ("matmul", "softmax", "memory")}
WORKLOAD_SYMBOLS = frozenset("B H Hkv N M D Dv e eo".split())
PATTERN_KEYS = ("pattern", *sorted(PATTERN_FLAGS))
_pattern_key = itemgetter(*PATTERN_KEYS)  # the flags that decide a pattern, as a tuple
PREDICT_COLUMNS = ("speedup_tile", "speedup_roofline")


@lru_cache(maxsize=64)
def profile(name: str):
    return load_profile(name)


def flags_at(spec: SweepSpec, coords: dict) -> dict:
    """The CLI flag dict of one grid point (unset flags None, as click would give them)."""
    f = spec.base_flags.copy()
    f.update({k: spec.axes[k][coords[k]] for k in spec.axes})
    return f


# ----------------------------------------------------------------------------- exact engine
_BASELINES: dict = {}  # priced baselines per shape, shared by the rows of a sweep


def _build(f: dict, engine: "VectorEngine | None"):
    """(workload, pattern, baseline) of a flag dict; built once per distinct flags with an engine."""
    from .cli.options import BASELINES

    if engine is None:
        return build_workload(f), build_pattern(f), BASELINES[f["baseline"]]()
    built = engine.workload(f), engine.pattern(f), engine.pattern(f, "baseline")
    for b in built:
        if isinstance(b, str):
            raise AttnsimError(b)
    return built


def exact_row(f: dict, level: str, engine: "VectorEngine | None" = None) -> dict:
    """One grid point, counted and priced exactly (what ``attnsim predict`` prints)."""
    try:
        wl, pattern, baseline = _build(f, engine)
        pattern.check(wl)
        hw = profile(f["hw"])
        if level == "predict":
            tiling = TilingRequest(parse_dims("--q-tile", f["q_tile"]), parse_dims("--kv-tile", f["kv_tile"]),
                                   f["policy"]) if pattern.tileable else None
            if len(_BASELINES) > 10_000:
                _BASELINES.clear()
            free = engine.overlay_free(hw) if engine is not None else None
            row = tile_row(wl, pattern, hw, tiling, baseline, _BASELINES, free) if tiling is not None else None
            if row is not None:  # the GPU tile model's numbers, without predict's report objects
                return row
            r = predict(wl, pattern, hw, tiling, baseline, baseline_cache=_BASELINES)
            s = r.speedup_vs_dense
            c, p = r.pattern.counts, r.pattern
            return {"engine": "predict", "pairs_per_head": c.pairs_per_head, "matmul_flops": c.flops.matmul,
                    "exp": c.flops.exp, "compulsory_bytes": c.bytes.compulsory, "bound_by": p.roofline.bound_by,
                    "roofline_s": p.roofline.time_s, "time_s": p.predicted_s,
                    "baseline_time_s": r.dense.predicted_s, "speedup": s["predicted"], "speedup_flop": s["flop"],
                    "speedup_tile": s["tile"] if s["tile"] is not None else np.nan,
                    "speedup_roofline": s["roofline"]}
        b, d = _roofline_baseline(wl, baseline, hw)
        c = count(wl, pattern)
        p = price(c, hw, tile_model=False)
        return {"engine": "exact", "pairs_per_head": c.pairs_per_head, "matmul_flops": c.flops.matmul,
                "exp": c.flops.exp, "compulsory_bytes": c.bytes.compulsory, "bound_by": p.roofline.bound_by,
                "roofline_s": p.roofline.time_s, "time_s": p.predicted_s, "baseline_time_s": d.predicted_s,
                "speedup": d.predicted_s / p.predicted_s, "speedup_flop": _ratio(b.flops.matmul, c.flops.matmul)}
    except AttnsimError as err:
        return {"engine": "exact" if level == "roofline" else "predict", "error": str(err)}


def _roofline_baseline(wl: Workload, baseline: Pattern, hw):
    """(counts, priced) of the baseline at roofline level, once per workload and device."""
    key = ("roofline", wl, baseline, id(hw))
    if key not in _BASELINES:
        baseline.check(wl)
        b = count(wl, baseline)
        if len(_BASELINES) > 10_000:
            _BASELINES.clear()
        _BASELINES[key] = b, price(b, hw, tile_model=False)
    return _BASELINES[key]


def _ratio(a, b):
    return a / b if b else float("inf")


# ------------------------------------------------------------------------- vectorised engine
def form_key(pattern: Pattern) -> tuple:
    """What decides the *shape* of a pattern's closed form: its type and non-numeric fields
    (integers become symbols; a tuple of integers keeps only its length, the grid rank).
    tests/test_sweep.py proves the forms equal across numeric values for every registered class."""
    out = [type(pattern).__name__]
    for f in fields(pattern):
        v = getattr(pattern, f.name)
        if isinstance(v, int) and not isinstance(v, bool):
            out.append((f.name, "int"))
        elif isinstance(v, tuple) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            out.append((f.name, "ints", len(v)))
        else:
            out.append((f.name, repr(v)))
    return tuple(out)


_FORMS: dict[tuple, dict | None] = {}
TOUCHED_ALL = "every key is attended by some query (touched keys = M)"
# A closed form's assumptions as row predicates; rows failing one take the exact engine. Forms
# with an assumption missing here are never vectorised.
ROW_ASSUMPTIONS = {
    "N = M": lambda env: env["N"] == env["M"],
    "N = M (causal self-attention)": lambda env: env["N"] == env["M"],
    "N = M = prod(L_i)": lambda env: env["N"] == env["M"],
    "N <= M": lambda env: env["N"] <= env["M"],
    "w <= N": lambda env: env["w"] <= env["N"],
    TOUCHED_ALL: lambda env: env["touched_all"] == 1,
    # float64 log2 is exact for integers far beyond any sequence length
    "floor(log2 x) evaluates exactly in float64 for x < 2^48 blocks (numpy.log2)": lambda env: env["N"] < 2.0**48,
}


QUANTITIES = ("pairs_per_head", "matmul_flops", "exp", "compulsory_bytes")
OP_QUANTITIES = ("softmax_other", "kernels")  # what a multi-op pattern's form must add


def _form(key: tuple, phase: str, rank: int, rep: Pattern):
    """(lambdified forms by quantity) of the pattern form ``key`` (``rep``: any pattern of that
    form); None when it has none. A single fused mask kernel needs the four QUANTITIES (its
    other softmax FLOPs and launches follow the mask rule); a multi-op pattern's form must also
    give its other FLOPs and kernel count (MLA, linear attention)."""
    if (key, phase, rank) not in _FORMS:
        need = QUANTITIES if vectorisable(rep) else QUANTITIES + OP_QUANTITIES
        try:
            f = formula(rep, phase, rank)
            checks = tuple(a for a in f.assumes if "checks)" not in a)  # "(as --pattern X checks)": check() did
            usable = all(q in f.exprs for q in need) and all(a in ROW_ASSUMPTIONS for a in checks)
            _FORMS[key, phase, rank] = {"exprs": {q: _lambdified(f.exprs[q]) for q in need},
                                        "assumes": checks} if usable else None
        except AttnsimError:
            _FORMS[key, phase, rank] = None
    return _FORMS[key, phase, rank]


def _eval(fn_syms, env: dict, n: int) -> np.ndarray:
    syms, fn = fn_syms
    if not syms:
        return np.full(n, float(fn()), dtype=float)
    out = fn(*(np.asarray(env[s], dtype=float) for s in syms))
    return np.broadcast_to(np.asarray(out, dtype=float), (n,)).copy()


def softmax_other(phase: str, b, h, n, dv, pairs) -> np.ndarray:
    """Non-exp softmax FLOPs of a fused mask kernel (attnsim.counting._flops)."""
    rows = b * h * n
    fwd = FWD_SOFTMAX_OPS_PER_PAIR * b * h * pairs + rows * dv
    bwd = BWD_SOFTMAX_OPS_PER_PAIR * b * h * pairs + 2 * rows * dv
    return {"fwd": fwd, "decode": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[phase]


def roofline_arrays(hw, dtype: str, phase: str, q: dict, b, h, n, dv) -> tuple[np.ndarray, np.ndarray]:
    """(binding roof's time, index of the binding roof) per row, as hwmodels.roofline.roofs."""
    other = q["softmax_other"] if "softmax_other" in q else softmax_other(phase, b, h, n, dv, q["pairs_per_head"])
    matmul_s = q["matmul_flops"] / hw.matmul_peak(dtype)
    exp_s = q["exp"] / hw.get("exp_per_s")
    other_s = other / hw.get("vector_flops_per_s")
    memory_s = q["compulsory_bytes"] / hw.get("memory_bw_bytes_per_s")
    roofs = [matmul_s, exp_s, other_s, memory_s] if hw.kind == "gpu" else [matmul_s, exp_s + other_s, memory_s]
    stacked = np.stack(roofs)
    bound = np.argmax(stacked, axis=0)
    return stacked.max(axis=0), bound


class VectorEngine:
    """Caches shared by every chunk of one sweep (workloads, patterns, validity, symbol values)."""

    def __init__(self):
        self._patterns: dict[tuple, Pattern | str] = {}
        self._pairs: dict[tuple, dict | str] = {}
        self._workloads: dict[tuple, Workload | str] = {}
        self._overlays: dict[str, tuple[float, bool]] = {}

    def pattern(self, f: dict, which: str = "pattern") -> Pattern | str:
        from .cli.options import BASELINES

        key = (which, f["baseline"]) if which == "baseline" else _pattern_key(f)
        if key not in self._patterns:
            try:
                self._patterns[key] = BASELINES[f["baseline"]]() if which == "baseline" else build_pattern(f)
            except AttnsimError as err:
                self._patterns[key] = str(err)
        return self._patterns[key]

    def overlay_free(self, hw) -> bool:
        """No calibration overlay next to ``hw``, re-checked at most once a second: a file stat
        per row costs more than pricing the row (5x more on a Dask worker)."""
        now = time.monotonic()
        seen = self._overlays.get(hw.name)
        if seen is None or now - seen[0] > 1.0:
            seen = self._overlays[hw.name] = (now, load_overlay(hw) is None)
        return seen[1]

    def workload(self, f: dict) -> Workload | str:
        key = tuple(f[k] for k in WORKLOAD_KEYS)
        if key not in self._workloads:
            try:
                self._workloads[key] = build_workload(f)
            except AttnsimError as err:
                self._workloads[key] = str(err)
        return self._workloads[key]

    def pattern_values(self, pattern: Pattern, f: dict) -> dict | str:
        """The pattern's symbol values and validity on one (lengths, head dims, phase) shape: checks
        and formula_values read lengths and dims, never batch or head counts (tested)."""
        key = (pattern, f["seq"], f["tokens"], f["kv_seq"], f["decode_tokens"], f["head_dim"], f["v_head_dim"],
               f["phase"], f["dtype"])
        if key not in self._pairs:
            try:
                wl = build_workload({**f, "batch": 1, "heads": 1, "kv_heads": 1})
                pattern.check(wl)
                vals = {k: v for k, v in values(wl, pattern).items() if k not in WORKLOAD_SYMBOLS}
                self._pairs[key] = {**vals, "touched_all": int(pattern.touched_keys(wl) == wl.kv_len)}
            except AttnsimError as err:
                self._pairs[key] = str(err)
        return self._pairs[key]


def _workload_arrays(spec: SweepSpec, coords: dict, rows: np.ndarray, f0: dict) -> dict:
    """Workload symbols per row (numpy), from the numeric workload axes."""
    def col(key):
        if key in spec.axes:
            vals = np.array([np.nan if v is None else v for v in spec.axes[key]], dtype=float)
            return vals[coords[key][rows]]
        v = f0[key]
        return np.full(len(rows), np.nan if v is None else v, dtype=float)

    b, h, hkv, d, dv = col("batch"), col("heads"), col("kv_heads"), col("head_dim"), col("v_head_dim")
    hkv = np.where(np.isnan(hkv), h, hkv)
    dv = np.where(np.isnan(dv), d, dv)
    if f0["tokens"] is not None:
        n = m = np.full(len(rows), float(np.prod(parse_dims("--tokens", f0["tokens"]))))
    else:
        seq, kv = col("seq"), col("kv_seq")
        m = np.where(np.isnan(kv), seq, kv)
        n = col("decode_tokens") if f0["phase"] == "decode" else seq
    return {"B": b, "H": h, "Hkv": hkv, "N": n, "M": m, "D": d, "Dv": dv,
            "e": np.full(len(rows), DTYPES[f0["dtype"]]), "eo": np.full(len(rows), OUTPUT_BYTES[f0["dtype"]])}


def _invalid_workload(w: dict) -> np.ndarray:
    """Rows Workload() would refuse: non-integer or non-positive sizes, Hq not divisible by Hkv."""
    bad = np.zeros(len(w["B"]), dtype=bool)
    for k in ("B", "H", "Hkv", "N", "M", "D", "Dv"):
        bad |= ~(w[k] >= 1) | (w[k] != np.floor(w[k]))
    return bad | (np.fmod(w["H"], np.where(w["Hkv"] >= 1, w["Hkv"], 1)) != 0)


# ------------------------------------------------------------------------------ one chunk
SHAPE_KEYS = ("seq", "kv_seq", "decode_tokens", "head_dim", "v_head_dim")
NUMERIC_COLUMNS = ("pairs_per_head", "matmul_flops", "exp", "compulsory_bytes", "roofline_s", "time_s",
                   "baseline_time_s", "speedup", "speedup_flop")


def evaluate_chunk(spec: SweepSpec, start: int, stop: int, engine: VectorEngine | None = None,
                   idx: np.ndarray | None = None) -> dict:
    """Columns (numpy arrays) for grid points ``start`` .. ``stop - 1`` in grid order, or for
    the flat grid indices ``idx`` in their order."""
    engine = engine or VectorEngine()
    idx = np.arange(start, stop) if idx is None else idx
    n = len(idx)
    co = dict(zip(spec.axes, np.unravel_index(idx, spec.shape)))
    out = {k: axis_array(spec.axes[k])[co[k]] for k in spec.axes}
    numeric = NUMERIC_COLUMNS + (PREDICT_COLUMNS if spec.level == "predict" else ())
    out.update({c: np.full(n, np.nan) for c in numeric})
    out.update(error=np.full(n, "", dtype=object), engine=np.full(n, "", dtype=object),
               bound_by=np.full(n, "", dtype=object))
    shape_axes = [k for k in SHAPE_KEYS if k in spec.axes]
    outer_axes = [k for k in spec.axes if k not in shape_axes and k not in ("batch", "heads", "kv_heads")]
    outer = _group_ids(co, outer_axes, spec, n)
    for gid in np.unique(outer):
        rows = np.nonzero(outer == gid)[0]
        if spec.level == "predict" or not _try_vector(spec, engine, co, rows, shape_axes, out):
            for r in rows:
                _store(out, r, exact_row(flags_at(spec, {k: co[k][r] for k in co}), spec.level, engine))
    return out


def _try_vector(*args) -> bool:
    try:
        return _vector_group(*args)
    except AttnsimError:  # e.g. no matmul peak for the dtype: the exact engine says it per row
        return False


def axis_array(values: tuple) -> np.ndarray:
    """An axis' values as numbers when they all are (int64/float64), else as objects."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values)
    return np.asarray(values, dtype=object)


def _group_ids(co: dict, keys: list, spec: SweepSpec, n: int) -> np.ndarray:
    if not keys:
        return np.zeros(n, dtype=np.int64)
    return np.ravel_multi_index([co[k] for k in keys], [len(spec.axes[k]) for k in keys])


def _store(out: dict, r: int, row: dict) -> None:
    for k, v in row.items():
        out[k][r] = v


def _vector_group(spec, engine: VectorEngine, co, rows, shape_axes, out) -> bool:
    """Evaluate one group (same pattern, hardware, dtype, phase, tokens) as arrays; False when the
    group needs the exact engine."""
    f0 = flags_at(spec, {k: co[k][rows[0]] for k in co})
    pattern, base = engine.pattern(f0), engine.pattern(f0, "baseline")
    if isinstance(pattern, str) or isinstance(base, str):  # the flags build no pattern: every row fails
        out["error"][rows] = pattern if isinstance(pattern, str) else f"baseline: {base}"
        out["engine"][rows] = "vector"
        return True
    hw = profile(f0["hw"])
    rank = len(parse_dims("--tokens", f0["tokens"])) if f0["tokens"] is not None else 1
    forms = _form(form_key(pattern), f0["phase"], rank, pattern)
    base_forms = _form(form_key(base), f0["phase"], rank, base)
    if forms is None or base_forms is None or hw.kind not in ROOFS:
        return False
    w = _workload_arrays(spec, co, rows, f0)
    bad = _invalid_workload(w)
    for r in rows[bad]:
        _store(out, r, exact_row(flags_at(spec, {k: co[k][r] for k in co}), "roofline", engine))
    keep = ~bad
    shape_id = _group_ids(co, shape_axes, spec, len(co[next(iter(co))]))[rows]
    _, first, inverse = np.unique(shape_id, return_index=True, return_inverse=True)
    pvals, bvals, errors = [], [], {}
    for j, r in enumerate(rows[first]):
        f = flags_at(spec, {k: co[k][r] for k in co})
        pv, bv = engine.pattern_values(pattern, f), engine.pattern_values(base, f)
        if isinstance(pv, str) or isinstance(bv, str):
            errors[j] = pv if isinstance(pv, str) else f"baseline: {bv}"
            pv, bv = {}, {}
        pvals.append(pv)
        bvals.append(bv)
    failed = np.isin(inverse, list(errors)) & keep
    for r, j in zip(rows[failed], inverse[failed]):
        out["error"][r], out["engine"][r] = errors[j], "vector"
    ok = keep & ~failed
    env, env_b = _environment(w, pvals, inverse), _environment(w, bvals, inverse)
    outside = ok & ~(_holds(forms, env) & _holds(base_forms, env_b))
    for r in rows[outside]:  # a closed form's assumption fails here: count it exactly
        _store(out, r, exact_row(flags_at(spec, {k: co[k][r] for k in co}), "roofline", engine))
    ok &= ~outside
    if not ok.any():
        return True
    sel = rows[ok]
    wsel = {k: v[ok] for k, v in w.items()}
    q = _quantities(forms, {k: v[ok] for k, v in env.items()})
    qb = _quantities(base_forms, {k: v[ok] for k, v in env_b.items()})
    args = (hw, f0["dtype"], f0["phase"])
    roof, bound = roofline_arrays(*args, q, wsel["B"], wsel["H"], wsel["N"], wsel["Dv"])
    roof_b, _ = roofline_arrays(*args, qb, wsel["B"], wsel["H"], wsel["N"], wsel["Dv"])
    launch_b = KERNELS_PER_PHASE[f0["phase"]] * hw.get("launch_overhead_s")
    launch = q["kernels"] * hw.get("launch_overhead_s") if "kernels" in q else launch_b
    out["engine"][sel] = "vector"
    for k in QUANTITIES:
        out[k][sel] = q[k]
    out["bound_by"][sel] = np.asarray(ROOFS[hw.kind], dtype=object)[bound]
    out["roofline_s"][sel], out["time_s"][sel], out["baseline_time_s"][sel] = roof, roof + launch, roof_b + launch_b
    out["speedup"][sel] = (roof_b + launch_b) / (roof + launch)
    with np.errstate(divide="ignore"):
        out["speedup_flop"][sel] = np.where(q["matmul_flops"] > 0, qb["matmul_flops"] / q["matmul_flops"], np.inf)
    return True


def _environment(w: dict, pvals: list[dict], inverse: np.ndarray) -> dict:
    """Symbol values per row: the workload's, and the pattern's looked up by shape."""
    env = dict(w)
    for name in set().union(*pvals) if pvals else ():
        table = np.array([pv.get(name, np.nan) for pv in pvals], dtype=float)
        env[name] = table[inverse]
    return env


def _holds(forms: dict, env: dict) -> np.ndarray:
    """Rows where every assumption of the closed forms holds."""
    ok = np.ones(len(env["B"]), dtype=bool)
    for a in forms["assumes"]:
        try:
            ok &= ROW_ASSUMPTIONS[a](env)
        except KeyError:  # no valid shape in the group supplied the symbol: no row is kept anyway
            ok[:] = False
    return ok


def _quantities(forms: dict, env: dict) -> dict:
    return {q: _eval(fs, env, len(env["B"])) for q, fs in forms["exprs"].items()}
