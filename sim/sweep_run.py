"""Run a sweep: chunks of the grid in order (in this process or on a Dask cluster), results
streamed to CSV/Parquet through a temporary file (renamed only when complete), the best configs
and the error tally kept on the way."""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import AttnsimError
from .sweep_eval import VectorEngine, axis_array, evaluate_chunk
from .spec import PATTERN_FLAGS
from .sweep_spec import SweepSpec

CHUNK_POINTS = {"roofline": 1 << 18, "predict": 256}
# A Dask task should run for seconds, so scheduling and result transfer stay small beside it.
DASK_CHUNK_POINTS = {"roofline": 1 << 18, "predict": 8192}
TOP = 10
GRID_ORDER_POINTS = 1 << 16  # rows per chunk handed on after a pattern-major evaluation


@dataclass
class SweepResult:
    spec: SweepSpec
    points: int = 0
    valid: int = 0
    seconds: float = 0.0
    engines: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    best: dict | None = None          # columns of the TOP best rows
    kept: dict | None = None          # every row's columns, when asked to keep them (plots, tests)
    out: str | None = None

    @property
    def rate_per_s(self) -> float:
        return self.points / self.seconds if self.seconds else float("inf")


def chunks(spec: SweepSpec, size: int | None = None) -> list[tuple[int, int]]:
    size = size or CHUNK_POINTS[spec.level]
    return [(s, min(s + size, spec.points)) for s in range(0, spec.points, size)]


PATTERN_AXES = frozenset({"pattern"}) | PATTERN_FLAGS
_ENGINES: dict = {}  # per worker process: one engine per sweep, so its caches serve every chunk


def pattern_major(spec: SweepSpec, start: int, stop: int) -> np.ndarray:
    """Flat grid indices of positions start..stop-1 in the grid re-ordered with the pattern's
    axes outermost: contiguous runs of these share their pattern (and so the memo caches)."""
    keys = sorted(spec.axes, key=lambda k: k not in PATTERN_AXES)  # stable: spec order otherwise
    coords = np.unravel_index(np.arange(start, stop), [len(spec.axes[k]) for k in keys])
    by_key = dict(zip(keys, coords))
    return np.ravel_multi_index([by_key[k] for k in spec.axes], spec.shape)


def _chunk_task(spec: SweepSpec, start: int, stop: int) -> dict:
    """One chunk on a worker, shipped compactly: result columns only (the axis columns follow
    from the indices) and strings as codes into their distinct values. Tile-level chunks run in
    pattern-major order (see dask_chunks)."""
    if id_of(spec) not in _ENGINES and len(_ENGINES) >= 4:
        _ENGINES.clear()  # a long-lived worker serving many sweeps
    engine = _ENGINES.setdefault(id_of(spec), VectorEngine())
    idx = pattern_major(spec, start, stop) if spec.level == "predict" else None
    cols = evaluate_chunk(spec, start, stop, engine, idx)
    out = {}
    for k, v in cols.items():
        if k in spec.axes:
            continue
        if v.dtype == object:
            values, codes = np.unique(v.astype(str), return_inverse=True)
            out[k] = ("codes", values, codes.astype(np.int32).ravel())
        else:
            out[k] = v
    return out


def id_of(spec: SweepSpec) -> str:
    return repr((spec.axes, spec.level, spec.fixed))


def _expand(spec: SweepSpec, idx: np.ndarray, compact: dict) -> dict:
    """The columns ``evaluate_chunk`` returns for grid indices ``idx``, from a worker's compact form."""
    co = dict(zip(spec.axes, np.unravel_index(idx, spec.shape)))
    cols = {k: axis_array(spec.axes[k])[co[k]] for k in spec.axes}
    for k, v in compact.items():
        cols[k] = v[1].astype(object)[v[2]] if isinstance(v, tuple) else v
    return cols


def _in_grid_order(idx: np.ndarray, cols: dict):
    """Columns computed for the grid indices ``idx`` (every point once), handed on as
    (0, chunk) in grid order (progress was reported as they were computed), in large chunks:
    the consumer's per-chunk work (ranking, writing) is then vectorised over many rows."""
    order = np.argsort(idx, kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    for a in range(0, len(idx), GRID_ORDER_POINTS):
        yield 0, {k: v[a:a + GRID_ORDER_POINTS] for k, v in cols.items()}


def _join(parts: list):
    """Concatenate one column's compact parts (arrays, or string codes with their values)."""
    if not isinstance(parts[0], tuple):
        return np.concatenate(parts)
    values = np.unique(np.concatenate([p[1] for p in parts]))
    return "codes", values, np.concatenate([np.searchsorted(values, p[1])[p[2]] for p in parts])


def local_chunks(spec: SweepSpec, size: int | None = None) -> Iterator[tuple[int, dict | None]]:
    """(points done, columns or None) in this process. Tile-level sweeps run pattern-major
    (chunks of points that share a pattern reuse its tile histograms and schedules: ~1.4x on a
    sweep over heads x windows) and hand their columns on in grid order at the end."""
    engine = VectorEngine()
    if spec.level != "predict":
        for start, stop in chunks(spec, size):
            yield stop - start, evaluate_chunk(spec, start, stop, engine)
        return
    parts = []
    for start, stop in chunks(spec, size):
        idx = pattern_major(spec, start, stop)
        parts.append((idx, evaluate_chunk(spec, start, stop, engine, idx)))
        yield stop - start, None
    yield from _in_grid_order(np.concatenate([p[0] for p in parts]),
                              {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]})


def dask_chunks(spec: SweepSpec, scheduler: str | None, workers: int, size: int | None = None):
    """Chunks evaluated on a Dask cluster (a local one with ``workers`` processes unless
    ``scheduler`` names one), yielded in grid order: the output equals a local run's."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise AttnsimError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
    spans = chunks(spec, size or max(1, min(DASK_CHUNK_POINTS[spec.level], -(-spec.points // (8 * workers)))))
    cluster = None
    if not scheduler:
        import dask

        # A quiet local cluster: the workers' statistical profiler, 20 ms event-loop tick, work
        # stealing and 100 ms monitors took ~10 % of the CPU from a tile-level sweep's tasks.
        with dask.config.set({"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
                              "distributed.scheduler.work-stealing": False,
                              "distributed.worker.memory.monitor-interval": "1s",
                              "distributed.admin.system-monitor.interval": "2s"}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        client = Client(scheduler or cluster, timeout="30s")
    except OSError as err:
        raise AttnsimError(f"--scheduler {scheduler}: cannot connect ({err}): check the address") from None
    try:
        # tasks go to whichever worker is free (pinning contiguous runs to one worker each
        # unbalanced them: large windows cost more than small ones)
        futures = [client.submit(_chunk_task, spec, a, b, pure=False) for a, b in spans]
        if spec.level != "predict":
            for (a, b), fut in zip(spans, futures):
                yield b - a, _expand(spec, np.arange(a, b), fut.result())
            return
        span_of = {f.key: span for f, span in zip(futures, spans)}
        done = {}
        for fut in as_completed(futures):
            done[fut.key] = fut.result()
            yield span_of[fut.key][1] - span_of[fut.key][0], None
        parts = [done[f.key] for f in futures]
        idx = np.concatenate([pattern_major(spec, a, b) for a, b in spans])
        yield from _in_grid_order(idx, _expand(spec, idx, {k: _join([p[k] for p in parts]) for k in parts[0]}))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _rank(spec: SweepSpec, cols: dict) -> np.ndarray:
    """Row order, best first: highest ``best`` column, or lowest for times (``*_s``)."""
    if spec.best not in cols or not np.issubdtype(np.asarray(cols[spec.best]).dtype, np.number):
        raise AttnsimError(f"best: {spec.best!r} is not a numeric result column: use speedup, time_s, ...")
    v = np.asarray(cols[spec.best], dtype=float)
    v = np.where(cols["error"] == "", v, np.nan)
    key = v if spec.best.endswith("_s") else -v
    return np.argsort(np.where(np.isnan(key), np.inf, key), kind="stable")


def _take(cols: dict, idx: np.ndarray) -> dict:
    return {k: np.asarray(v)[idx] for k, v in cols.items()}


def _concat(a: dict | None, b: dict) -> dict:
    return b if a is None else {k: np.concatenate([a[k], b[k]]) for k in b}


def run_sweep(spec: SweepSpec, out: str | None = None, source=None, keep: bool = False,
              progress: Callable[[int], None] | None = None) -> SweepResult:
    """Evaluate every grid point. ``source`` (default: this process) yields (points computed,
    columns in grid order or None): progress and columns may come apart."""
    result = SweepResult(spec, out=out)
    writer = _Writer(out) if out else None
    kept: list[dict] = []
    start = time.perf_counter()
    try:
        for done, cols in (source or local_chunks(spec)):
            if progress and done:
                progress(done)
            if cols is None:  # computed, columns to come (tile-level sweeps run pattern-major)
                continue
            ok = cols["error"] == ""
            result.points += len(ok)
            result.valid += int(ok.sum())
            result.engines.update(Counter(cols["engine"].tolist()))
            result.errors.update(Counter(cols["error"][~ok].tolist()))
            order = _rank(spec, cols)[:TOP]
            top = _take(cols, order[ok[order]])
            merged = _concat(result.best, top)
            result.best = _take(merged, _rank(spec, merged)[:TOP])
            if keep:
                kept.append(cols)
            if writer:
                writer.write(cols)
        if writer:
            writer.commit()
        if kept:  # one concatenation at the end: appending per chunk would copy quadratically
            result.kept = {k: np.concatenate([c[k] for c in kept]) for k in kept[0]}
    finally:
        if writer:
            writer.abort()
    result.seconds = time.perf_counter() - start
    return result


class _Writer:
    """CSV or Parquet, written to ``OUT.partial`` and renamed to ``OUT`` only when complete."""

    def __init__(self, out: str):
        self.path = Path(out)
        if self.path.suffix not in (".csv", ".parquet"):
            raise AttnsimError(f"--out {out}: use a .csv or .parquet file name")
        if not self.path.parent.is_dir():
            raise AttnsimError(f"--out {out}: folder {self.path.parent} does not exist")
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self._pq = None
        self._csv = None
        if self.path.suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise AttnsimError("--out *.parquet needs pyarrow: pip install pyarrow, or use --out FILE.csv") from None

    def write(self, cols: dict) -> None:
        if self.path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({k: _arrow_column(v) for k, v in cols.items()})
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, table.schema)
            self._pq.write_table(table)
            return
        import csv

        first = self._csv is None
        if first:
            self._csv = open(self.tmp, "w", newline="")
        w = csv.writer(self._csv)
        if first:
            w.writerow(cols)
        w.writerows(zip(*(np.asarray(v).tolist() for v in cols.values())))

    def commit(self) -> None:
        for handle in (self._pq, self._csv):
            if handle is not None:
                handle.close()
        self._pq = self._csv = None
        if self.tmp.exists():
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        for handle in (self._pq, self._csv):
            if handle is not None:
                handle.close()
        self.tmp.unlink(missing_ok=True)


def _arrow_column(v: np.ndarray):
    import pyarrow as pa

    if v.dtype == object:
        return pa.array([None if x is None else str(x) for x in v.tolist()], type=pa.string())
    return pa.array(v)
