"""Paper cases: every YAML is well-formed and sourced; verdicts follow from attnsim's bounds."""
import json

import pytest

from attnsim import Workload, count
from attnsim.cases import case_paths, load_cases
from attnsim.cases.verdict import judge
from attnsim.cli import main
from attnsim.patterns import Causal, MoBA

CASES = load_cases()


def test_at_least_25_sourced_cases():
    assert len(CASES) >= 25
    for case in CASES:
        assert case.name == case_paths()[case.name].stem
        claim = case.claim
        assert claim.get("source") and claim.get("quote") and claim.get("metric"), case.name


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_case_gets_a_verdict_with_a_reason(case):
    v = judge(case)
    assert v.verdict in ("consistent", "claim above our upper bound", "not comparable") and v.reason


def test_flash_moba_is_judged_against_an_independent_bound():
    (case,) = load_cases(("flash-moba",))
    v = judge(case)
    wl = Workload.sequence(524288, batch=2, heads=16, head_dim=128, dtype="fp16")
    bound = count(wl, Causal()).flops.matmul / count(wl, MoBA(128, 8, causal=True)).flops.matmul
    assert v.bounds["flop"] == pytest.approx(bound) and v.bounds["baseline"] == "causal"
    assert v.verdict == ("consistent" if 14.7 <= bound * 1.05 else "claim above our upper bound")


def test_a_claim_against_a_non_dense_baseline_is_not_judged():
    (case,) = load_cases(("faster-neighborhood-attention",))
    assert judge(case).verdict == "not comparable" and "not full attention" in judge(case).reason


def test_cases_cli(capsys):
    assert main(["cases", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(CASES)
    assert main(["cases", "run", "flash-moba", "gna", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["case"] for r in rows] == ["flash-moba", "gna"]
    assert main(["cases", "run", "no-such-paper"]) == 2
    assert "no case named" in capsys.readouterr().err
