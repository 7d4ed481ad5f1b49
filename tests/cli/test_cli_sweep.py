"""attnsim sweep: outputs, JSON summary, exit codes and one-line errors."""
import json
from pathlib import Path

import pytest

from attnsim.cli import main

REPO = Path(__file__).resolve().parents[2]


def _spec(tmp_path, text: str) -> str:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return str(p)


def test_shipped_sweep_runs_with_json_csv_and_plot(tmp_path, capsys):
    out, png = tmp_path / "s.csv", tmp_path / "s.png"
    code = main(["sweep", str(REPO / "cases/sweeps/sliding-window.yaml"), "--out", str(out), "--plot", str(png),
                 "--json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0
    assert d["points"] == 2 * 9 * 7 * 2 * 2 and 0 < d["valid"] < d["points"]
    assert d["engines"] == {"vector": d["points"]}
    speedups = [row["speedup"] for row in d["best"]]
    assert speedups == sorted(speedups, reverse=True)
    assert len(out.read_text().splitlines()) == d["points"] + 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("text,needle", [
    ("grid: {seq: 1024, windw: 3}\n", "unknown grid key 'windw'"),
    ("grid: {seq: {from: 8, to: 1, step: 1}}\n", "empty range"),
    ("grid: {seq: {from: 1, to: 1000000, step: 1}, heads: {from: 1, to: 1000000, step: 1}}\n",
     "1,000,000,000,000 points"),
    ("grid: {seq: 1024, pattern: sliding, window: 4096, causal: all}\n", "no valid configuration"),
    ("grid: [1, 2]\n", "missing 'grid:'"),
])
def test_bad_specs_exit_2_with_one_line(tmp_path, capsys, text, needle):
    code = main(["sweep", _spec(tmp_path, text)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_bad_output_leaves_nothing(tmp_path, capsys):
    spec = _spec(tmp_path, "grid: {seq: [1024, 2048]}\n")
    assert main(["sweep", spec, "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["sweep", spec, "--out", str(tmp_path / "nope" / "x.csv")]) == 2
    assert main(["sweep", spec, "--plot", str(tmp_path / "x.png")]) == 2  # no plot: section
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
    capsys.readouterr()


def test_table_names_the_best_config(tmp_path, capsys):
    spec = _spec(tmp_path, "grid: {pattern: sliding, causal: all, seq: 65536, window: [512, 4096]}\n")
    assert main(["sweep", spec]) == 0
    out = capsys.readouterr().out
    assert "2 configurations (2 valid)" in out and "Best 2 by speedup" in out
    assert out.index("512") < out.index("4096")  # the smaller window is faster, so first


def test_scheduler_without_dask_and_bad_workers_are_refused(tmp_path, capsys):
    spec = _spec(tmp_path, "grid: {seq: [1024, 2048]}\n")
    assert main(["sweep", spec, "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler needs --dask" in capsys.readouterr().err
    assert main(["sweep", spec, "--dask", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_shipped_spec_by_name(capsys):
    assert main(["sweep", "gna-hunyuan", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["level"] == "predict" and d["points"] == 56 and d["engines"] == {"predict": 56}
    assert main(["sweep", "no-such-spec"]) == 2
    assert "shipped specs: gna-hunyuan, sliding-window" in capsys.readouterr().err
