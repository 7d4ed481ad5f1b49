"""Calibration: NNLS equals a brute-force active-set search; fitting recovers known coefficients
from synthetic measurements; compare reports held-out errors and bound violations."""
import itertools
import json

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim.cli import main
from attnsim.hwmodels import load_profile
from attnsim.hwmodels.calibration import load_overlay, write_overlay
from attnsim.hwmodels.kernelcost import FEATURES, default_coefficients, features, kernel_time_s
from attnsim.validate.calibrate import calibrate, fit, load_rows, nnls, spearman, split_of
from attnsim.validate.compare import compare
from attnsim.validate.store import Measurement, Store
from attnsim.validate.suites import suite

HW = load_profile("EPYC-2vCPU")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 8))
def test_nnls_equals_best_nonnegative_subset(seed, n, extra):
    """Brute force: least squares on every subset of columns, keep feasible ones, take the best."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n + extra, n)), rng.standard_normal(n + extra)
    best = np.inf
    for k in range(n + 1):
        for cols in itertools.combinations(range(n), k):
            x = np.zeros(n)
            if cols:
                x[list(cols)] = np.linalg.lstsq(a[:, cols], b, rcond=None)[0]
            if (x >= -1e-12).all():
                best = min(best, np.linalg.norm(a @ x - b))
    got = nnls(a, b)
    assert (got >= 0).all()
    assert np.linalg.norm(a @ got - b) == pytest.approx(best, rel=1e-7, abs=1e-9)


def test_spearman_matches_definition():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 30.0, 20.0, 40.0])
    d = np.array([0, 1, -1, 0])  # rank differences, no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1))
    assert spearman(a, b) == pytest.approx(1 - 6 * (d**2).sum() / (4 * 15))
    assert spearman(a, a[::-1]) == pytest.approx(-1.0)


def test_split_is_stable_and_roughly_thirty_percent():
    names = [c.name for c in suite("cpu")]
    assert [split_of(n) for n in names] == [split_of(n) for n in names]
    share = sum(split_of(n) == "test" for n in names) / len(names)
    assert 0.15 < share < 0.45


def test_fit_recovers_known_coefficients_exactly():
    rng = np.random.default_rng(1)
    truth = np.array([2e-5, 3e-11, 0.0, 1e-10, 4e-7, 0.0])
    x = rng.uniform(1, 1e4, (40, 6)) * np.array([1, 1e6, 1e5, 1e5, 10, 1e3])
    x[:, 0] = 1.0
    got = fit(x, x @ truth)
    np.testing.assert_allclose(x @ got, x @ truth, rtol=1e-6)


def _synthetic_db(path, coeffs_by_kernel):
    """Store the cpu suite's configs with 'measured' = the linear model under known coefficients."""
    with Store(path) as s:
        run = s.start_run("cpu", "cpu", {"cpu_model": "synthetic", "torch": None, "torch_threads": 2})
        for cfg in suite("cpu"):
            wl, p = cfg.build()
            for kernel in cfg.runners:
                if kernel not in coeffs_by_kernel:
                    continue
                t = kernel_time_s(features(wl, p, kernel, HW), coeffs_by_kernel[kernel])
                s.add(run, Measurement(cfg.name, cfg.family, kernel, p.describe(),
                                       json.dumps({"pattern": cfg.pattern, "workload": cfg.workload}),
                                       json.dumps(cfg.workload, sort_keys=True), HW.name, t, 0.0, t, 5))


def test_calibrate_then_compare_on_synthetic_measurements(tmp_path):
    base = default_coefficients(HW, "fp32")
    truth = {"sdpa-flash": {**base, "matmul_flops": base["matmul_flops"] * 1.7, "tiles": 3e-6},
             "flex": {**base, "exp": base["exp"] * 2.5, "call": 4e-5}}
    db = tmp_path / "s.sqlite"
    _synthetic_db(db, truth)
    with Store(db, create=False) as s:
        kernels, fitted_on = calibrate(s, HW)
    assert set(kernels) == {"sdpa-flash", "flex"} and fitted_on["rows"] > 0
    for k in kernels.values():
        assert k["train"]["mape"] < 1e-6 and k["test"]["mape"] < 1e-6
    out = tmp_path / "overlay.yaml"
    write_overlay(HW, kernels, fitted_on, out)
    assert yaml.safe_load(out.read_text())["profile"] == HW.name
    assert set(FEATURES) <= set(yaml.safe_load(out.read_text())["kernels"]["flex"]["coefficients"])


def test_cli_calibrate_and_compare(tmp_path, capsys, monkeypatch):
    base = default_coefficients(HW, "fp32")
    db = tmp_path / "s.sqlite"
    _synthetic_db(db, {"sdpa-flash": base, "flex": base, "natten": base, "sdpa-math": base})
    out = tmp_path / "calibration" / "EPYC-2vCPU.yaml"
    assert main(["calibrate", "--db", str(db), "--hw", "EPYC-2vCPU", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overlay"] == str(out)
    # compare reads the overlay next to the profile: point the profile there
    monkeypatch.setattr("attnsim.hwmodels.calibration.overlay_path", lambda profile: out)
    assert load_overlay(HW) is not None
    assert main(["compare", "--db", str(db), "--hw", "EPYC-2vCPU", "--json", "--plots", str(tmp_path / "p")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"]["mape"] < 1e-6 and report["bound_violations"] == []
    assert {g["model"] for g in report["by_family_kernel"]} == {"calibrated"}
    assert len(report["plots"]) == 3 and all((tmp_path / "p").joinpath(p.split("/")[-1]).exists()
                                             for p in report["plots"])


def test_compare_flags_a_measured_speedup_above_the_bound(tmp_path):
    with Store(tmp_path / "b.sqlite") as s:
        run = s.start_run("cpu", "cpu", {})
        wl = {"seq": 512, "heads": 1}
        for fam, t in (("dense", 1.0), ("causal", 0.1)):  # 10x > causal's ~2x FLOP bound
            s.add(run, Measurement(f"{fam}[x]", fam, "sdpa-flash", fam, json.dumps({"pattern": {"pattern": fam},
                                   "workload": wl}), json.dumps(wl, sort_keys=True), HW.name, t, 0.0, t, 5))
        report = compare(s, HW, "all")
    (v,) = report["bound_violations"]
    assert v["measured"] == pytest.approx(10.0) and v["flop_bound"] < 2.01


def test_calibrate_without_rows_is_a_clear_error(tmp_path, capsys):
    Store(tmp_path / "e.sqlite").close()
    assert main(["calibrate", "--db", str(tmp_path / "e.sqlite"), "--hw", "EPYC-2vCPU"]) == 2
    assert "no measurements" in capsys.readouterr().err


def test_predict_with_a_kernel_uses_the_overlay_and_says_so(tmp_path, monkeypatch, capsys):
    base = default_coefficients(HW, "fp32")
    coeffs = {**base, "call": 1e-3}
    out = tmp_path / "EPYC-2vCPU.yaml"
    write_overlay(HW, {"sdpa-flash": {"coefficients": coeffs, "train": {"n": 9, "mape": 0.01},
                                      "test": {"n": 4, "mape": 0.02, "max_err": 0.03}}}, {"db": "x"}, out)
    args = ["predict", "--hw", "EPYC-2vCPU", "--pattern", "causal", "--seq", "1024", "--dtype", "fp32", "--json"]
    assert main(args) == 0  # no overlay beside the shipped profile: analytical models
    plain = json.loads(capsys.readouterr().out)
    monkeypatch.setattr("attnsim.hwmodels.calibration.overlay_path",
                        lambda profile: out if profile.name == HW.name else tmp_path / "absent.yaml")
    assert main(args) == 0  # the overlay has causal's usual kernel: used without --kernel
    got = json.loads(capsys.readouterr().out)
    note = [a for a in got["assumptions"] if "calibrated on measurements" in a]
    assert note and "held-out MAPE 2.0% on 4 points" in note[0]
    from attnsim import Workload
    from attnsim.patterns import Causal
    w = Workload.sequence(1024, dtype="fp32")
    expect = kernel_time_s(features(w, Causal(), "sdpa-flash", HW), coeffs)
    assert got["time_s"]["predicted"] == pytest.approx(expect) != plain["time_s"]["predicted"]
    assert main(["predict", "--hw", "H100-SXM", "--seq", "1024", "--kernel", "flex"]) == 2
    assert "need a calibration overlay" in capsys.readouterr().err
    assert main(["predict", "--hw", "EPYC-2vCPU", "--seq", "1024", "--kernel", "cudnn"]) == 2
    assert "--kernel 'cudnn'" in capsys.readouterr().err


def test_busiest_share_is_the_static_split_of_q_tiles():
    """Brute force: OpenMP's static schedule hands thread t the items [t*c, (t+1)*c), c = ceil(n/T)."""
    from attnsim import Workload
    from attnsim.hwmodels.kernelcost import busiest_share, q_tile_work
    from attnsim.patterns import Causal, Dense
    from attnsim.tiles import Tiling

    tiling = Tiling((256,), (512,))
    for heads, pattern in ((1, Causal()), (4, Causal()), (3, Dense()), (1, Dense())):
        wl = Workload.sequence(4096, heads=heads, dtype="fp32")
        per_tile = [min(4096, 256 * (i + 1)) // 512 + (256 * (i + 1) % 512 > 0) for i in range(16)]
        if isinstance(pattern, Dense):
            per_tile = [8] * 16
        assert list(q_tile_work(wl, pattern, tiling)) == per_tile
        items = per_tile * heads
        chunk = -(-len(items) // 2)
        expect = max(sum(items[:chunk]), sum(items[chunk:])) / sum(items)
        assert busiest_share(wl, pattern, tiling, heads, HW) == pytest.approx(expect)
    # one causal head on two threads: Q tile i visits ceil(256 (i + 1) / 512) KV tiles, 1,1,2,2,...,8,8
    # (72 in all); the second thread's tiles 8..15 visit 5+5+6+6+7+7+8+8 = 52 of them
    assert busiest_share(Workload.sequence(4096, dtype="fp32"), Causal(), tiling, 1, HW) == pytest.approx(52 / 72)


def test_kv_streaming_switches_to_dram_beyond_half_the_llc():
    from attnsim import Workload
    from attnsim.hwmodels.kernelcost import LLC_SHARE, fits_in_cache
    from attnsim.patterns import Dense

    llc = HW.get("l3_bytes")
    fits = int(LLC_SHARE * llc) // (128 * 4)  # keys whose K and V (64 + 64 fp32) fill the budget exactly
    near = Workload.sequence(fits, heads=8, kv_heads=1, head_dim=64, dtype="fp32", phase="decode")
    kv_bytes = near.kv_len * 128 * 4
    assert fits_in_cache(kv_bytes, HW) and not fits_in_cache(kv_bytes + 512, HW)
    f_in, f_out = (features(w, Dense(), "sdpa-flash", HW) for w in (near, near.with_(kv_len=fits + 1)))
    assert f_in["stream_dram_bytes"] == 0 < f_in["stream_cache_bytes"]
    assert f_out["stream_cache_bytes"] == 0 < f_out["stream_dram_bytes"]


def test_compare_per_suite_and_latest_measurement_wins(tmp_path, capsys):
    """--suite keeps that suite's configs only; a re-measured (config, kernel) supersedes the
    earlier row (a rerun with a larger --budget replaces noisy medians)."""
    db = tmp_path / "s.sqlite"
    base = default_coefficients(HW, "fp32")
    _synthetic_db(db, {"sdpa-flash": base})
    with Store(db, create=False) as s:
        (first,) = [r for r in s.rows() if r["config"].startswith("dense[") and r["kernel"] == "sdpa-flash"][:1]
        run = s.start_run("cpu", "cpu", {})
        wl = json.loads(first["pattern_json"])
        s.add(run, Measurement(first["config"], "dense", "sdpa-flash", "dense", first["pattern_json"],
                               first["workload_json"], HW.name, 2 * first["median_s"], 0.0, first["median_s"], 5))
        s.add(run, Measurement("linear[x]", "linear", "sdpa-flash", "dense",
                               json.dumps({"pattern": {"pattern": "dense"}, "workload": wl["workload"]}),
                               first["workload_json"], HW.name, 1.0, 0.0, 1.0, 5))
        rows = [r for r in load_rows(s, HW) if r.config == first["config"]]
        assert [r.measured_s for r in rows] == [2 * first["median_s"]]
        everything = compare(s, HW, "all")
        cpu_only = compare(s, HW, "all", "cpu")
    assert everything["overall"]["n"] == cpu_only["overall"]["n"] + 1
    assert sum(g["n"] for g in everything["by_family"]) == everything["overall"]["n"]
    assert {g["family"] for g in everything["by_family"]} == {g["family"] for g in everything["by_family_kernel"]}
    assert main(["compare", "--db", str(db), "--hw", "EPYC-2vCPU", "--suite", "gpu"]) == 2
    assert "no measurement of that suite" in capsys.readouterr().err
