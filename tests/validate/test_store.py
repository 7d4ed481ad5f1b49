"""Results store: schema checks, durability of each insert, refusal of foreign or newer files."""
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from attnsim.errors import AttnsimError
from attnsim.validate.store import SCHEMA_VERSION, Measurement, Store


def _m(i: int) -> Measurement:
    return Measurement(config=f"c{i}", family="dense", kernel="k", pattern="dense", pattern_json="{}",
                       workload_json="{}", hw_profile="EPYC-2vCPU", median_s=1e-3 * (i + 1), iqr_s=0.0,
                       min_s=1e-3, repeats=5)


def test_roundtrip_and_export(tmp_path):
    db = tmp_path / "r.sqlite"
    with Store(db) as s:
        run = s.start_run("smoke", "cpu", {"torch": "x"})
        for i in range(3):
            s.add(run, _m(i))
    with Store(db, create=False) as s:
        rows = s.rows()
        assert [r["config"] for r in rows] == ["c0", "c1", "c2"]
        assert s.runs()[0]["env"] == {"torch": "x"}
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.export(tmp_path / "out.csv") == 3
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("id,run_id")


def test_refuses_foreign_and_newer_files_without_touching_them(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database")
    with pytest.raises(AttnsimError, match="not a SQLite results database"):
        Store(text)
    assert text.read_text() == "not a database"

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(AttnsimError, match="not an attnsim results database"):
        Store(other)

    newer = tmp_path / "newer.sqlite"
    Store(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(AttnsimError, match="newer"):
        Store(newer)


def test_missing_db_is_an_error_when_reading(tmp_path):
    with pytest.raises(AttnsimError, match="no such results database"):
        Store(tmp_path / "absent.sqlite", create=False)


def test_export_refuses_unknown_suffix_and_writes_nothing(tmp_path):
    with Store(tmp_path / "r.sqlite") as s:
        with pytest.raises(AttnsimError, match="csv or .parquet"):
            s.export(tmp_path / "out.xlsx")
    assert not list(tmp_path.glob("out*"))


def test_killing_a_run_loses_no_committed_row(tmp_path):
    """A child process inserts rows and is SIGKILLed mid-run: every row it reported is there."""
    db = tmp_path / "k.sqlite"
    child = textwrap.dedent(f"""
        import sys, time
        from attnsim.validate.store import Store, Measurement
        s = Store({str(db)!r})
        run = s.start_run("smoke", "cpu", {{}})
        for i in range(10_000):
            s.add(run, Measurement(config=f"c{{i}}", family="dense", kernel="k", pattern="p", pattern_json="{{}}",
                                   workload_json="{{}}", hw_profile="h", median_s=1.0, iqr_s=0.0, min_s=1.0, repeats=1))
            print(i, flush=True)
            if i == 40:
                time.sleep(60)  # killed here
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    reported = []
    for line in proc.stdout:
        reported.append(int(line))
        if reported[-1] == 40:
            proc.kill()
            break
    proc.wait()
    with Store(db, create=False) as s:
        stored = [r["config"] for r in s.rows()]
    assert stored == [f"c{i}" for i in reported]
