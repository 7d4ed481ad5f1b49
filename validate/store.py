"""Results store: one SQLite file (WAL mode, versioned schema) holding every measurement.

Each measurement is committed in its own transaction as soon as it is taken, so killing a run
loses nothing already measured. A file that is not an attnsim store, or one written by a newer
schema, is refused with a clear error and never touched (no silent migration or overwrite).
Torch-free: the store, export and comparison work on any machine.
"""
from __future__ import annotations

import csv
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from attnsim.errors import AttnsimError

SCHEMA_VERSION = 1
APPLICATION = "attnsim-results"
DEFAULT_DB = "attnsim-results.sqlite"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    suite TEXT NOT NULL,
    device TEXT NOT NULL,
    env_json TEXT NOT NULL
);
CREATE TABLE measurements (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    created_at REAL NOT NULL,
    config TEXT NOT NULL,          -- the suite's name for the (workload, pattern) point
    family TEXT NOT NULL,          -- pattern family (dense, causal, sliding, ...)
    kernel TEXT NOT NULL,          -- runner name (sdpa-flash, flex, natten, unfused, ...)
    pattern TEXT NOT NULL,         -- attnsim describe() string
    pattern_json TEXT NOT NULL,    -- {"name": ..., "flags": {...}} to rebuild it
    workload_json TEXT NOT NULL,
    hw_profile TEXT NOT NULL,      -- profile the prediction used
    median_s REAL NOT NULL,
    iqr_s REAL NOT NULL,
    min_s REAL NOT NULL,
    repeats INTEGER NOT NULL,
    compile_s REAL,                -- one-off compile/build time, never inside median_s
    max_abs_err REAL,              -- vs the naive reference, checked before timing
    predicted_s REAL,              -- attnsim's prediction at measurement time
    prediction_json TEXT
);
CREATE INDEX measurements_by_family ON measurements(family, kernel);
"""

COLUMNS = ("id", "run_id", "created_at", "config", "family", "kernel", "pattern", "pattern_json",
           "workload_json", "hw_profile", "median_s", "iqr_s", "min_s", "repeats", "compile_s",
           "max_abs_err", "predicted_s", "prediction_json")


@dataclass(frozen=True)
class Measurement:
    config: str
    family: str
    kernel: str
    pattern: str
    pattern_json: str
    workload_json: str
    hw_profile: str
    median_s: float
    iqr_s: float
    min_s: float
    repeats: int
    compile_s: float | None = None
    max_abs_err: float | None = None
    predicted_s: float | None = None
    prediction_json: str | None = None


class Store:
    """An open results database. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise AttnsimError(f"--db {self.path}: no such results database (run `attnsim validate run` first)")
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.conn = sqlite3.connect(self.path, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as err:
            raise AttnsimError(f"--db {self.path}: not a SQLite results database ({err}); "
                               "give a new file name") from None
        if fresh:
            self._create()
        else:
            self._check()

    def _create(self) -> None:
        with self.conn:
            self.conn.executescript(_SCHEMA)
            self.conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION)),
                ("created_at", str(time.time()))])

    def _check(self) -> None:
        try:
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            raise AttnsimError(f"--db {self.path}: not an attnsim results database (no meta table); "
                               "give a new file name") from None
        if meta.get("application") != APPLICATION:
            raise AttnsimError(f"--db {self.path}: not an attnsim results database; give a new file name")
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise AttnsimError(f"--db {self.path}: schema version {version} is newer than this attnsim's "
                               f"({SCHEMA_VERSION}); upgrade attnsim to read it")
        if version < SCHEMA_VERSION:  # pragma: no cover - no older schema exists yet
            raise AttnsimError(f"--db {self.path}: schema version {version} is older; export and re-import")

    # -- writing -------------------------------------------------------------------------
    def start_run(self, suite: str, device: str, env: dict) -> int:
        with self.conn:
            cur = self.conn.execute("INSERT INTO runs (started_at, suite, device, env_json) VALUES (?, ?, ?, ?)",
                                    (time.time(), suite, device, json.dumps(env, sort_keys=True)))
        return int(cur.lastrowid)

    def add(self, run_id: int, m: Measurement) -> int:
        """Insert one measurement in its own transaction (durable once this returns)."""
        fields = m.__dataclass_fields__
        with self.conn:
            cur = self.conn.execute(
                f"INSERT INTO measurements (run_id, created_at, {', '.join(fields)}) "
                f"VALUES (?, ?, {', '.join('?' * len(fields))})",
                (run_id, time.time(), *(getattr(m, f) for f in fields)))
        return int(cur.lastrowid)

    # -- reading -------------------------------------------------------------------------
    def rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        cur = self.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM measurements {where} ORDER BY id", params)
        return [dict(zip(COLUMNS, r)) for r in cur.fetchall()]

    def runs(self) -> list[dict]:
        cur = self.conn.execute("SELECT id, started_at, suite, device, env_json FROM runs ORDER BY id")
        return [{"id": i, "started_at": t, "suite": s, "device": d, "env": json.loads(e)}
                for i, t, s, d, e in cur.fetchall()]

    def export(self, out: str | Path) -> int:
        """Write every measurement to CSV (``.csv``) or Parquet (``.parquet``); returns rows."""
        out, rows = Path(out), self.rows()
        tmp = out.with_name(out.name + ".part")  # rename at the end: nothing half-written
        if out.suffix == ".csv":
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        elif out.suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise AttnsimError("--out *.parquet needs pyarrow: pip install pyarrow, or use --out FILE.csv") from None
            pq.write_table(pa.Table.from_pylist(rows), tmp)
        else:
            raise AttnsimError(f"--out {out}: use a .csv or .parquet file name")
        tmp.replace(out)
        return len(rows)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
