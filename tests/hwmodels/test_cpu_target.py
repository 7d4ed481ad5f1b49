"""The cpu kind: two sourced profiles, golden numbers derived by hand."""
import pytest

from attnsim import Workload, count, predict
from attnsim.hwmodels import list_profiles, load_profile
from attnsim.hwmodels.kernelcost import busiest_share, default_coefficients, features, kernel_time_s
from attnsim.patterns import Dense
from attnsim.tiles import Tiling


def test_two_sourced_cpu_profiles():
    cpus = [p for p in list_profiles() if p.kind == "cpu"]
    assert {p.name for p in cpus} >= {"EPYC-2vCPU", "EPYC-9654"}
    assert all(q.source for p in cpus for q in p.fields.values())


def test_epyc_9654_roofline_golden():
    # dense fp32, 8 heads x 128, 4096 tokens: matmul FLOPs 4 * 8 * 4096^2 * 128 = 68,719,476,736;
    # peak 96 cores x 2.4 GHz x 32 FLOP/cycle = 7.3728 TFLOP/s -> 9.3207 ms, the binding roof.
    # exp: 8 * 4096^2 = 134,217,728 at 191.9 Gop/s = 0.6994 ms (< matmul). Energy bound: 360 W x time.
    r = predict(Workload.sequence(4096, heads=8, dtype="fp32"), Dense(), "EPYC-9654")
    roofs = r.pattern.roofline.roofs_s
    assert roofs["matmul"] == pytest.approx(68_719_476_736 / 7.3728e12)
    assert r.pattern.roofline.bound_by == "matmul"
    assert r.pattern.energy_j["board_power_bound"] == pytest.approx(360 * r.pattern.predicted_s)


def test_epyc_9654_kernel_model_golden():
    # PyTorch CPU flash attention at 4096 queries: q split 256, kv split 512 -> 16 Q tiles per head,
    # 8 heads = 128 equal items on 96 threads; OpenMP static chunks of ceil(128 / 96) = 2 items, so
    # the busiest thread does 2/128 of the work. Uncalibrated per-thread matmul cost
    # 96 / 7.3728e12 s/FLOP: 68,719,476,736 x 2/128 x 96 / 7.3728e12 = 13.981 ms (the 2-item waves
    # cost 1/3 more than a perfect 128/96 split would).
    hw = load_profile("EPYC-9654")
    wl = Workload.sequence(4096, heads=8, dtype="fp32")
    assert busiest_share(wl, Dense(), Tiling((256,), (512,)), 8, hw) == pytest.approx(2 / 128)
    f = features(wl, Dense(), "sdpa-flash", hw)
    coeffs = default_coefficients(hw, "fp32")
    assert f["matmul_flops"] * coeffs["matmul_flops"] == pytest.approx(68_719_476_736 * 2 / 128 * 96 / 7.3728e12)
    # exp: 134,217,728 x 2/128 x 96 / 191.9e9 = 1.0491 ms; call 0.873 us; bytes at 460.8 GB/s / 96
    assert f["exp"] * coeffs["exp"] == pytest.approx(134_217_728 * 2 / 128 * 96 / 191.9e9)
    assert kernel_time_s(f, coeffs) > 13.981e-3
    assert count(wl, Dense()).flops.matmul == 68_719_476_736
