"""Every runner's output equals the fp32 reference (the check `validate run` makes before timing),
and runners that cannot run a config say why."""
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from attnsim import Workload  # noqa: E402
from attnsim.cli import cli, main  # noqa: E402
from attnsim.patterns import Causal, Dense, MoBA, Neighborhood, Sliding  # noqa: E402
from attnsim.validate.runners import (SDPA, Flex, Natten, Unfused, build_checked, make_inputs,  # noqa: E402
                                      reference)

CASES = [
    (Workload.sequence(64, heads=2, head_dim=32, dtype="fp32"), Dense()),
    (Workload.sequence(64, heads=4, kv_heads=2, head_dim=32, dtype="fp32"), Causal()),
    (Workload.sequence(300, kv_len=300, heads=2, kv_heads=1, head_dim=16, dtype="fp32", phase="decode"), Dense()),
    (Workload.sequence(64, heads=2, head_dim=32, dtype="bf16"), Causal()),
]


def test_reference_is_softmax_attention_under_the_mask():
    wl, p = Workload.sequence(12, kv_len=20, heads=1, head_dim=8, dtype="fp32"), Sliding(5)
    x = make_inputs(wl, "cpu")
    got = reference(wl, p, x)[0, 0].numpy()
    q, k, v = (t[0, 0].double().numpy() for t in (x.q, x.k, x.v))
    mask = p.mask(wl)
    for i in range(wl.q_len):  # one row at a time, straight from the definition
        s = q[i] @ k[mask[i]].T / np.sqrt(8)
        w = np.exp(s - s.max())
        np.testing.assert_allclose(got[i], (w / w.sum()) @ v[mask[i]], atol=1e-5)


@pytest.mark.parametrize("wl,pattern", CASES)
@pytest.mark.parametrize("runner", [SDPA("flash"), SDPA("math"), Unfused()], ids=lambda r: r.name)
def test_sdpa_and_unfused_match_reference(wl, pattern, runner):
    ok, why = runner.supports(wl, pattern, "cpu")
    assert ok, why
    x = make_inputs(wl, "cpu")
    _, _, err = build_checked(runner, wl, pattern, x, reference(wl, pattern, x))
    assert err < 0.05


def test_wrong_output_is_caught_before_timing():
    wl, p = Workload.sequence(32, heads=1, head_dim=16, dtype="fp32"), Causal()
    x = make_inputs(wl, "cpu")
    with pytest.raises(ValueError, match="differs from the reference"):
        build_checked(Unfused(), wl, p, x, reference(wl, Dense(), x))  # reference of another mask


def test_unsupported_configs_say_why():
    seq = Workload.sequence(64, heads=1, dtype="fp32")
    assert SDPA("efficient").supports(seq, Dense(), "cpu") == (False, "sdpa-efficient is CUDA-only")
    assert "top-left" in SDPA("flash").supports(Workload.sequence(64, kv_len=80, dtype="fp32"), Causal(), "cpu")[1]
    assert "runs dense, causal" in SDPA("math").supports(seq, Sliding(8), "cpu")[1]
    assert "data-dependent" in Flex().supports(Workload.sequence(256, dtype="fp32"), MoBA(64, 2), "cpu")[1]
    assert "token grid" in Natten().supports(seq, Neighborhood((3,)), "cpu")[1]
    assert "fp8" in SDPA("math").supports(Workload.sequence(64, dtype="fp8"), Dense(), "cpu")[1]
    assert "forward" in SDPA("math").supports(Workload.sequence(64, dtype="fp32", phase="bwd"), Dense(), "cpu")[1]


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_natten_matches_reference_on_a_2d_grid():
    pytest.importorskip("natten")
    wl, p = Workload.on_grid((8, 9), heads=1, head_dim=16, dtype="fp32"), Neighborhood((3, 5), dilation=(2, 1))
    x = make_inputs(wl, "cpu")
    _, _, err = build_checked(Natten(compile=False), wl, p, x, reference(wl, p, x))
    assert err < 1e-4


def test_validate_run_stores_checked_measurements(tmp_path):
    db = tmp_path / "r.sqlite"
    result = CliRunner().invoke(cli, ["validate", "run", "--suite", "smoke", "--family", "dense", "--db", str(db),
                                      "--budget", "0", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    kernels = {m["kernel"] for m in out["measured"]}
    assert kernels == {"sdpa-flash", "sdpa-math", "unfused"} and not out["failed"]
    result = CliRunner().invoke(cli, ["validate", "export", "--db", str(db), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 0 and "6 measurements" in result.output
    result = CliRunner().invoke(cli, ["validate", "runs", "--db", str(db), "--json"])
    run = json.loads(result.output)[0]
    assert run["measurements"] == 6 and run["env"]["torch"] == torch.__version__


def test_validate_without_torch_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["validate", "run", "--suite", "smoke", "--db", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install torch==2.13.0" in err
    assert not (tmp_path / "r.sqlite").exists()  # nothing half-written
