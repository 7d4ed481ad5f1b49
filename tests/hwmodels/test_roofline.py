"""Roofline properties on every profile, and a few hand-derived golden numbers."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, predict
from attnsim.hwmodels import list_profiles, load_profile
from attnsim.patterns import Causal, Dense, Neighborhood, Sliding

PROFILES = [p for p in list_profiles() if "bf16" in p.matmul and p.kind in ("gpu", "cpu")]


@st.composite
def workload_and_pattern(draw):
    heads_kv = draw(st.sampled_from([1, 2, 8]))
    common = dict(batch=draw(st.integers(1, 8)), heads=heads_kv * draw(st.integers(1, 8)),
                  kv_heads=heads_kv, head_dim=draw(st.sampled_from([64, 128, 256])),
                  dtype="bf16", phase=draw(st.sampled_from(["fwd", "bwd", "fwd+bwd", "decode"])))
    if draw(st.booleans()) and common["phase"] != "decode":
        grid = tuple(draw(st.integers(8, 96)) for _ in range(draw(st.integers(1, 3))))
        wl = Workload.on_grid(grid, **common)
        windows = tuple(draw(st.integers(1, g)) for g in grid)
        return wl, draw(st.sampled_from([Dense(), Causal(), Neighborhood(window=windows)]))
    wl = Workload.sequence(draw(st.integers(1, 1 << 17)), **common)
    window = draw(st.integers(1, wl.kv_len))
    return wl, draw(st.sampled_from([Dense(), Causal(), Sliding(window, causal=True), Sliding(window)]))


@settings(max_examples=300)
@given(workload_and_pattern(), st.sampled_from(PROFILES))
def test_predicted_time_respects_every_roof_and_bounds_are_ordered(case, hw):
    wl, pattern = case
    r = predict(wl, pattern, hw)
    c, t = r.pattern.counts, r.pattern
    assert t.predicted_s >= t.roofline.time_s
    assert t.roofline.time_s >= c.flops.matmul / hw.matmul_peak("bf16")
    assert t.roofline.time_s >= c.bytes.compulsory / hw.get("memory_bw_bytes_per_s")
    assert t.roofline.time_s >= c.flops.exp / hw.get("exp_per_s")
    s = r.speedup_vs_dense
    assert s["roofline"] <= s["flop"] * (1 + 1e-12)
    # (the predicted speedup may fall below 1: masking every visited tile costs time)


def test_golden_dense_8k_on_h100_is_matmul_bound():
    # matmul: 4*B*H*N^2*D = 4*1*32*8192^2*128 = 1.0995e12 FLOP / 989.4e12 FLOP/s = 1.1113 ms.
    # exp: 32*8192^2 = 2.147e9 / 3.86e12 op/s = 0.556 ms; memory: 4 tensors * 32*8192*128*2 B
    # = 268 MB / 3.35e12 B/s = 80 us.
    r = predict(Workload.sequence(8192, heads=32, head_dim=128), Dense(), "H100-SXM")
    assert r.pattern.roofline.bound_by == "matmul"
    assert r.pattern.roofline.time_s == pytest.approx(1.0995116e12 / 989.4e12, rel=1e-6)
    assert r.pattern.roofline.roofs_s["exp"] == pytest.approx(2.147483648e9 / 3.86e12, rel=1e-6)
    # Tile model, 128x128 blocks: per tile MMA 128*128*2*256 FLOP / (989.4e12*0.75/132 per SM)
    # = 1.4922 us (exp 0.560, softmax 0.162, K+V load 64 KiB / (10.05e12/132) = 0.861 us: MMA
    # binds) + 100 cycles / 1.98 GHz = 0.0505 us. Per CTA: 2000 cycles = 1.0101 us + Q in,
    # O and LSE out 128*(256+256+4) B / (3.35e12/132) = 2.6025 us. CTA = 3.6126 + 64 * 1.5427
    # = 102.35 us; 64 Q tiles * 32 heads = 2048 CTAs on 132 SMs = 15.5 -> 16 waves: 1637.6 us,
    # + 5 us launch.
    tile = 128 * 128 * 2 * 256 / (989.4e12 * 0.75 / 132) + 100 / 1.98e9
    cta = 2000 / 1.98e9 + 128 * (256 + 256 + 4) / (3.35e12 / 132)
    assert r.pattern.predicted_s == pytest.approx(16 * (cta + 64 * tile) + 5e-6, rel=1e-9)
    assert r.pattern.breakdown_s["wave_quantization"] == pytest.approx(
        (16 - 2048 / 132) * (cta + 64 * tile), rel=1e-9)


def test_golden_gqa_decode_on_h200_is_memory_bound():
    # KV cache: 2 (K,V) * batch 32 * 8 kv heads * 131072 tokens * 128 * 2 B = 34.36 GB
    # (+ Q and O: 2 * 32*64*128*2 B = 1 MB) / 4.8e12 B/s = 7.158 ms; matmul is only
    # 4*32*64*131072*128 = 137 GFLOP -> 0.14 ms. Decode is memory-bound by ~50x.
    wl = Workload.sequence(131072, batch=32, heads=64, kv_heads=8, head_dim=128, phase="decode")
    r = predict(wl, Causal(), "H200")
    assert r.pattern.roofline.bound_by == "memory"
    kv_bytes = 2 * 32 * 8 * 131072 * 128 * 2
    qo_bytes = 2 * 32 * 64 * 128 * 2
    assert r.pattern.roofline.time_s == pytest.approx((kv_bytes + qo_bytes) / 4.8e12, rel=1e-9)


def test_golden_hunyuan_neighborhood_flop_bound():
    # 30x48x80 tokens, window 18x24x24: each query keeps 10368 of 115200 keys -> density 0.09,
    # FLOP bound 1/0.09 = 11.11x; compute-bound on H100 so the roofline bound matches it.
    wl = Workload.on_grid((30, 48, 80), heads=24, head_dim=128)
    r = predict(wl, Neighborhood(window=(18, 24, 24)), "H100-SXM")
    assert r.pattern.counts.density == pytest.approx(0.09)
    assert r.speedup_vs_dense["flop"] == pytest.approx(100 / 9)
    assert r.speedup_vs_dense["roofline"] == pytest.approx(100 / 9)


def test_cpu_prices_exp_on_the_vector_units():
    cpu = next(p for p in list_profiles() if p.kind == "cpu")
    r = predict(Workload.sequence(2048, heads=4, head_dim=64, dtype="fp32"), Dense(), cpu)
    roofs = r.pattern.roofline.roofs_s
    assert set(roofs) == {"matmul", "softmax", "memory"}
    c = r.pattern.counts
    assert roofs["softmax"] == pytest.approx(c.flops.exp / cpu.get("exp_per_s")
                                             + c.flops.softmax_other / cpu.get("vector_flops_per_s"))


def test_profiles_without_a_dtype_refuse_it():
    from attnsim.errors import PricingError

    with pytest.raises(PricingError, match="fp8"):
        predict(Workload.sequence(1024, dtype="fp8"), Dense(), load_profile("A100-SXM4-80GB"))
