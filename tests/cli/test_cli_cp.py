"""``attnsim cp``: JSON contract, tables, cases, and one-line errors with exit code 2."""
import json

import pytest

from attnsim.cli import main

CAUSAL_16 = ["cp", "--gpus", "16", "--pattern", "causal", "--seq", "131072", "--heads", "32", "--kv-heads", "8"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_all_schemes_side_by_side_as_json(capsys):
    code, out, _ = run(capsys, *CAUSAL_16, "--json")
    assert code == 0
    rows = json.loads(out)
    assert list(rows) == ["ring", "ulysses", "hybrid"]
    for scheme, r in rows.items():
        assert r["scheme"] == scheme and r["gpus"] == 16 and r["ulysses_degree"] * r["ring_degree"] == 16
        assert r["total_s"] >= max(r["compute_s"], r["comm_s"]) and r["exposed_comm_s"] >= 0
        assert r["total_s"] == pytest.approx(sum(s["time_s"] for s in r["stages"]))
        assert r["efficiency"] == pytest.approx(r["single_device_s"] / (16 * r["total_s"]))
        assert r["links"] == {"intra": "NVLink4", "inter": "IB-NDR"} and r["assumptions"]
    # 131072 tokens on 16 ring ranks, zigzag: every rank attends n(n+1)/2 + 15 n^2 / 2 pairs, n = 8192
    n = 8192
    assert rows["ring"]["rank_pairs_per_head"] == [n * (n + 1) // 2 + 15 * n * n // 2] * 16


def test_one_scheme_shows_where_the_time_goes(capsys):
    code, out, _ = run(capsys, *CAUSAL_16, "--scheme", "ring", "--layout", "contiguous", "--phase", "fwd+bwd")
    assert code == 0
    for words in ("compute", "exposed", "binds", "ring steps (bwd)", "ring dK,dV home (bwd)", "Assumptions"):
        assert words in out


def test_links_and_cases_are_listed(capsys):
    code, out, _ = run(capsys, "cp", "--list-interconnects", "--json")
    assert code == 0 and {"NVLink4", "PCIe4-x16", "IB-NDR"} <= {r["name"] for r in json.loads(out)}
    code, out, _ = run(capsys, "cp", "--list-cases", "--json")
    names = {r["name"] for r in json.loads(out)}
    assert code == 0 and {"longca-bench-96-causal", "unified-view-4x4090"} <= names


def test_a_case_runs_with_its_verdict(capsys):
    code, out, _ = run(capsys, "cp", "--case", "unified-view-4x4090", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["case"] == "unified-view-4x4090" and d["verdict"] in ("consistent", "not comparable",
                                                                      "claim above our upper bound")
    assert {r["name"] for r in d["readings"]} == {"parallel", "vs vanilla", "length"}
    code, out, _ = run(capsys, "cp", "--case", "longca-bench-96-full")
    assert code == 0 and "Verdict: not comparable" in out and "n/a" in out


@pytest.mark.parametrize("argv,words", [
    (["--gpus", "0"], "--gpus must be a positive integer"),
    (["--gpus", "12"], "--gpus 12 is not a whole number of nodes"),
    (["--scheme", "ulysses", "--heads", "20", "--kv-heads", "4"], "--heads 20 is not divisible by the Ulysses"),
    (["--intra", "NVLink9"], "--intra 'NVLink9': no such interconnect"),
    (["--inter", "IB-XDR"], "--inter 'IB-XDR': no such interconnect"),
    (["--hw", "H900"], "--hw 'H900': no such profile"),
    (["--phase", "decode"], "--phase decode"),
    (["--scheme", "ring", "--pattern", "moba", "--block-size", "512", "--top-k", "2"], "--pattern moba"),
    (["--case", "no-such-paper"], "--case 'no-such-paper'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, words):
    base = ["cp", "--seq", "65536", "--heads", "16", "--pattern", "causal"]
    code, out, err = run(capsys, *base, *argv)
    assert code == 2 and words in err and err.count("\n") == 1 and not out


def test_every_scheme_failing_is_one_error(capsys):
    code, _, err = run(capsys, "cp", "--seq", "65536", "--pattern", "sliding", "--window", "512", "--heads", "12",
                       "--kv-heads", "12", "--gpus", "8")
    assert code == 2 and err.startswith("attnsim: error: no scheme can run this setting") and "--pattern sliding" in err
