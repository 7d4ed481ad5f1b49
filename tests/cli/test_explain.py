"""``attnsim explain``: every section's numbers agree with ``attnsim predict``."""
import json
import math

import pytest


from .test_cli import HUNYUAN, run


def sections(capsys, *argv):
    code, out, err = run(capsys, "explain", *argv, "--json")
    assert code == 0, err
    return {s["topic"]: s for s in json.loads(out)}


def test_explain_numbers_match_predict(capsys):
    s = sections(capsys, "--hw", "H100-SXM", *HUNYUAN)
    code, out, _ = run(capsys, "predict", "--hw", "H100-SXM", *HUNYUAN, "--json")
    p = json.loads(out)
    assert set(s) == {"FLOP bound", "tile bound", "roofline", "tile model"}
    assert s["FLOP bound"]["numbers"]["bound"] == pytest.approx(p["speedup_vs_dense"]["flop"])
    assert s["tile bound"]["numbers"]["bound"] == pytest.approx(p["speedup_vs_dense"]["tile"])
    assert s["roofline"]["numbers"]["bound_by"] == p["bound_by"]
    assert s["tile model"]["numbers"]["breakdown_s"] == pytest.approx(p["time_s"]["breakdown"])
    # the per-dimension statements are true: fractions multiply to the whole
    assert math.prod(s["FLOP bound"]["numbers"]["per_dim_density"]) == pytest.approx(p["counts"]["density"])
    per_dim = s["tile bound"]["numbers"]["per_dim"]
    visited_fraction = p["tiles"]["per_head"]["visited"] / p["tiles"]["per_head"]["total"]
    assert math.prod(d["range"] for d in per_dim) == pytest.approx(visited_fraction)


def test_explain_on_a_cpu_has_no_tile_model_and_prints_prose(capsys):
    s = sections(capsys, "--hw", "EPYC-2vCPU", "--pattern", "causal", "--tokens", "2048", "--dtype", "fp32")
    assert "tile model" not in s and s["roofline"]["numbers"]["bound_by"] in ("matmul", "softmax", "memory")
    code, out, _ = run(capsys, "explain", "--hw", "H100-SXM", *HUNYUAN)
    assert code == 0 and "tile bound" in out.lower() and "paced by" in out


def test_explain_bad_input_is_one_line(capsys):
    code, out, err = run(capsys, "explain", "--pattern", "neighborhood", "--tokens", "8x8", "--window", "9x3")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "window" in err
