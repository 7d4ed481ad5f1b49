"""Systolic (TPU) target: MXU passes, fill/drain, padding, VMEM, HBM overlap; golden numbers
derived by hand from the profiles, brute-force tile schedules, schema refusals and the CLI."""
import heapq
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import PricingError, ProfileError, Workload, count, predict
from attnsim.cli import main
from attnsim.hwmodels import load_profile, load_profile_file
from attnsim.hwmodels.profile import shipped_profile_paths
from attnsim.hwmodels.systolic import (Array, matmul_cycles, price_systolic, step_cycles, vmem_bytes)
from attnsim.patterns import Causal, Dense, Neighborhood, Sliding
from attnsim.tiles import Tiling

V4, V5E = load_profile("TPU-v4"), load_profile("TPU-v5e")
T128 = Tiling((128,), (128,), "block-sparse")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("hw", [V4, V5E], ids=lambda p: p.name)
def test_array_geometry_reproduces_the_published_bf16_peak(hw):
    # Independent check of the sourced numbers: cores x MXUs x R x C x 2 FLOP x clock.
    geometric = (hw.get("compute_units") * hw.get("mxus_per_core") * hw.get("mxu_rows")
                 * hw.get("mxu_cols") * 2 * hw.get("clock_hz"))
    assert geometric == pytest.approx(hw.matmul_peak("bf16"), rel=0.01)


@pytest.mark.parametrize("m,k,n,cores,measured", [
    # ayaka14732 Pallas TPU tutorial, TPU v4, one TensorCore, operands in VMEM (ch. 1 section 11):
    (128, 128, 128, 1, 211),   # rows split over 4 MXUs: 32 + 179
    (1024, 128, 128, 1, 435),  # 256 + 179
    (16, 128, 128, 1, 176),    # model 4 + 179 = 183
    # ch. 2 section 9: bf16 2048^3 on both cores, 74787 cycles per core; each core streams 1024
    # rows: 256 passes in 64 rounds of 1024 rows + 179 = 76992.
    (1024, 2048, 2048, 2, 74787),
])
def test_matmul_cycles_match_published_tpu_v4_measurements(m, k, n, cores, measured):
    stream, fill = matmul_cycles(m, k, n, Array.of(V4, "bf16"))
    assert stream + fill == pytest.approx(measured, rel=0.05)


def test_matmul_cycles_by_hand():
    arr = Array.of(V4, "bf16")  # 4 MXUs of 128x128, 179 fill/drain cycles per round
    # One pass: best split is 4 row groups, one round of 32 rows.
    assert matmul_cycles(128, 128, 128, arr) == (32, 179)
    # Head dim 64 on the contraction side still takes a whole pass: same cycles, half the MACs.
    assert matmul_cycles(128, 64, 128, arr) == (32, 179)
    # 2 passes (K = 256): 2 row groups each, one round of 64 rows (1 group: 128 + 179 = 307).
    assert matmul_cycles(128, 256, 128, arr) == (64, 179)
    # 16 passes (512 x 512 weights): 4 rounds of all 512 rows.
    assert matmul_cycles(512, 512, 512, arr) == (4 * 512, 4 * 179)


@settings(max_examples=300)
@given(st.integers(1, 1024), st.integers(1, 1024), st.integers(1, 1024))
def test_matmul_streaming_is_never_faster_than_the_padded_array(m, k, n):
    arr = Array.of(V4, "bf16")
    stream, fill = matmul_cycles(m, k, n, arr)
    padded_macs = m * math.ceil(k / 128) * 128 * math.ceil(n / 128) * 128
    assert stream >= padded_macs / arr.macs_per_cycle - 1e-9
    assert fill >= arr.fill_drain
    # Exactly the padded ideal when the passes fill the MXUs in whole rounds.
    if math.ceil(k / 128) * math.ceil(n / 128) % 4 == 0:
        assert stream == padded_macs / arr.macs_per_cycle


def test_golden_dense_4096_bf16_d128_tpu_v4():
    # TPU v4: 2 cores, 1.05 GHz. 128x128 tiles: 32 Q tiles x 32 KV tiles, all visited, none masked.
    # Per step: S and PV are one pass each -> 32 streaming + 179 fill/drain cycles each;
    # softmax: exp 16384 / (1.075e12 / 2 / 1.05e9 = 511.9 per cycle) = 32.0 cycles,
    # vector ops 16384*4 + 128*128 = 81920 / (4.30e12 / 2 / 1.05e9 = 2047.6) = 40.01 cycles;
    # grid step 100. Step = 64 + 358 + 40.01 + 100 = 562.01 cycles.
    # 32 equal Q-tile jobs on 2 cores: 16 x 32 steps = 512 steps per core = 287,750 cycles
    # = 274.05 us. HBM: 1024 steps x K,V tile (128*256*2 = 65536 B) + 32 x Q/O (65536 B)
    # = 69,206,016 B / 1.2e12 = 57.7 us < compute: nothing exposed. Launch 1 us.
    c = count(Workload.sequence(4096, heads=1, head_dim=128), Dense(), T128)
    tt = price_systolic(c, V4)
    vec = max(16384 / (1.075e12 / 2 / 1.05e9), 81920 / (4.30e12 / 2 / 1.05e9))
    per_core_steps = 512
    expect = {"mxu": per_core_steps * 64 / 1.05e9, "fill/drain": per_core_steps * 358 / 1.05e9,
              "vector (softmax/exp)": per_core_steps * vec / 1.05e9,
              "grid steps": per_core_steps * 100 / 1.05e9, "launch": 1e-6}
    for name, value in tt.breakdown_s.items():
        assert value == pytest.approx(expect.get(name, 0.0), rel=1e-9), name
    assert sum(tt.breakdown_s.values()) == pytest.approx(275.05e-6, rel=1e-4)
    assert tt.bound_by == "fill/drain"
    # Energy: no per-op energies on TPU v4, so 192 W x time as an upper bound.
    assert tt.energy_j == {"board_power_bound": pytest.approx(192 * sum(tt.breakdown_s.values()))}


def test_golden_causal_4096_tpu_v4_balances_the_triangle_over_both_cores():
    # Q tile i visits i+1 KV tiles (528 in all), its diagonal tile is masked (+ 16384 * 5 /
    # 2047.6 = 40.01 cycles). LPT on 2 cores splits the Q tiles 32,29,28,25,... | 31,30,27,26,...
    # = 264 steps + 16 masked tiles each: 264 * 562.01 + 16 * 40.01 cycles = 141.9 us, + 1 us.
    c = count(Workload.sequence(4096, heads=1, head_dim=128), Causal(), T128)
    assert (c.tiles.visited, c.tiles.masked) == (528, 32)
    tt = price_systolic(c, V4)
    vec = max(16384 / (1.075e12 / 2 / 1.05e9), 81920 / (4.30e12 / 2 / 1.05e9))
    step, mask = 64 + 358 + vec + 100, 16384 * 5 / (4.30e12 / 2 / 1.05e9)
    assert tt.breakdown_s["masking"] == pytest.approx(16 * mask / 1.05e9)
    assert tt.breakdown_s["core imbalance"] == 0
    assert sum(tt.breakdown_s.values()) == pytest.approx((264 * step + 16 * mask) / 1.05e9 + 1e-6)


def test_golden_decode_is_hbm_bound_on_tpu_v5e():
    # v5e: 1 core at 1.5 GHz, 819 GB/s. 8 heads, KV cache 32768, Q tile 16 rows, KV tile 2048:
    # per step S = (16 x 128) @ (128 x 2048): 16 passes in 4 rounds of 16 rows -> 64 + 716;
    # PV (16 x 2048) @ (2048 x 128): the same. Softmax on 32768 scores: exp / 512 per cycle = 64,
    # ops (32768*4 + 16*128) / 4093.3 = 32.5 -> 64. Step 128 + 1432 + 64 + 100 = 1724 cycles,
    # every tile masked (15 padding rows): + 32768*5/4093.3 = 40.0. 128 steps: 150.5 us compute.
    # HBM: 128 x 1,048,576 B of K/V + 8 x 8192 B of Q/O = 134,283,264 B / 819e9 = 163.96 us.
    wl = Workload.sequence(1, kv_len=32768, heads=8, head_dim=128, phase="decode")
    c = count(wl, Dense(), Tiling((16,), (2048,)))
    tt = price_systolic(c, V5E)
    valu, hbm = 6.14e12 / 1.5e9, 134_283_264 / 819e9
    compute = 128 * (1724 + 32768 * 5 / valu) / 1.5e9
    assert tt.bound_by == "hbm"
    assert tt.breakdown_s["hbm (exposed)"] == pytest.approx(hbm - compute, rel=1e-6)
    assert sum(tt.breakdown_s.values()) == pytest.approx(hbm + 1e-6, rel=1e-9)
    assert tt.energy_j == {}  # v5e publishes no power figure
    assert any("no energy" in a for a in tt.assumptions)


@pytest.mark.parametrize("hw", [V4, V5E], ids=lambda p: p.name)
def test_head_dim_64_wastes_half_of_each_mxu_pass(hw):
    # d=64 fills half of the 128-row contraction side (S) and half of the output columns (PV):
    # the MXU and fill/drain stages cost exactly what d=128 costs, for half the matmul FLOPs.
    out = {}
    for d in (64, 128):
        c = count(Workload.sequence(8192, heads=8, head_dim=d), Causal(), T128)
        out[d] = (c, price_systolic(c, hw))
    (c64, t64), (c128, t128) = out[64], out[128]
    assert 2 * c64.flops.matmul == c128.flops.matmul
    for stage in ("mxu", "fill/drain"):
        assert t64.breakdown_s[stage] == pytest.approx(t128.breakdown_s[stage])
    assert any("utilisation while streaming 50%" in a for a in t64.assumptions)
    assert any("utilisation while streaming 100%" in a for a in t128.assumptions)


def test_op_level_fallback_pads_head_dims_by_hand():
    # No tiling: dense 4096, d=64, 1 head on v4. MACs 2 * 4096^2 * 64, padded x2 on both sides
    # -> 2^32 MACs / (4 x 16384 x 2 cores x 1.05e9) = 31.21 us (what d=128 costs).
    # Vector: max(exp 4096^2 / 1.075e12, (4 * 4096^2 + 4096 * 64) / 4.30e12) = 15.67 us.
    # HBM: Q, K, V, O 4 * 4096 * 64 * 2 B / 1.2e12 = 1.75 us, hidden. Launch 1 us.
    c = count(Workload.sequence(4096, heads=1, head_dim=64), Dense())
    tt = price_systolic(c, V4)
    assert tt.breakdown_s["mxu"] == pytest.approx(2**32 / (4 * 16384 * 2 * 1.05e9))
    assert tt.breakdown_s["vector (softmax/exp)"] == pytest.approx((4 * 4096**2 + 4096 * 64) / 4.30e12)
    assert tt.breakdown_s["hbm (exposed)"] == 0 and tt.breakdown_s["launch"] == 1e-6
    assert tt.breakdown_s["fill/drain"] == 0  # tile shapes unknown: no fill/drain term
    assert tt.bound_by == "mxu"


def test_vmem_capacity_decides_which_tiles_fit():
    # fwd 2048x2048 tiles, d=128, bf16: blocks (Q 512 KiB + K,V 1 MiB + O 512 KiB) x 2 buffers
    # = 4 MiB, f32 accumulator 2048 * 130 * 4 B, S and P in f32 2 * 2048^2 * 4 B = 32 MiB:
    # ~37 MiB, over v4's 16 MiB, under v5e's 128 MiB.
    assert vmem_bytes("fwd", 2048, 2048, 128, 128, 2, 2) == 4 * 2**20 + 2048 * 130 * 4 + 32 * 2**20
    c = count(Workload.sequence(8192, heads=2, head_dim=128), Causal(), Tiling((2048,), (2048,)))
    with pytest.raises(PricingError, match=r"TPU-v4: a fwd grid step .* needs 37\.\d MiB .* 16 MiB: "
                                           r"use smaller --q-tile/--kv-tile"):
        price_systolic(c, V4)
    assert price_systolic(c, V5E).breakdown_s["mxu"] > 0


def test_fp16_is_refused_naming_the_dtype():
    c = count(Workload.sequence(1024, heads=1, head_dim=128, dtype="fp16"), Dense(), T128)
    with pytest.raises(PricingError, match=r"TPU-v4 has no dense matmul peak for dtype fp16.*--dtype bf16"):
        price_systolic(c, V4)


def _brute_force_schedule(wl, pattern, tile, step, mask_cycles, cores):
    """Makespan from a materialised mask: per Q tile, the KV tiles holding a kept pair are
    visited, those not entirely kept are masked; every head repeats the Q-tile jobs, which go
    longest first to the least-loaded core."""
    nq, nk = math.ceil(wl.q_len / tile), math.ceil(wl.kv_len / tile)
    pad = np.zeros((nq * tile, nk * tile), dtype=bool)
    pad[:wl.q_len, :wl.kv_len] = pattern.mask(wl)
    blocks = pad.reshape(nq, tile, nk, tile).transpose(0, 2, 1, 3).reshape(nq, nk, -1)
    visited, full = blocks.any(-1).sum(1), blocks.all(-1).sum(1)
    jobs = [v * step + (v - f) * mask_cycles for v, f in zip(visited, full)] * wl.heads_total
    loads = [0.0] * cores
    for job in sorted(jobs, reverse=True):
        heapq.heapreplace(loads, loads[0] + job)
    return max(loads)


@settings(max_examples=40)
@given(st.integers(1, 12), st.sampled_from([16, 32, 64]), st.integers(1, 3), st.sampled_from([64, 128]),
       st.integers(1, 200), st.booleans())
def test_compute_time_matches_a_brute_force_mask_schedule(n_tiles, tile, heads, d, window, causal):
    wl = Workload.sequence(n_tiles * tile, heads=heads, head_dim=d)
    pattern = Sliding(min(window, wl.kv_len), causal=causal)
    tt = price_systolic(count(wl, pattern, Tiling((tile,), (tile,))), V4)
    arr = Array.of(V4, "bf16")
    step = step_cycles("fwd", tile, tile, d, d, arr)
    makespan = _brute_force_schedule(wl, pattern, tile, step.unmasked, step.masking, arr.cores)
    compute = sum(v for k, v in tt.breakdown_s.items() if k not in ("hbm (exposed)", "launch"))
    assert compute == pytest.approx(makespan / arr.clock_hz, rel=1e-9)


@pytest.mark.parametrize("phase", ["fwd", "bwd", "fwd+bwd", "decode"])
@pytest.mark.parametrize("hw", ["TPU-v4", "TPU-v5e"])
def test_every_phase_prices_and_the_breakdown_adds_up(phase, hw):
    wl = Workload.sequence(2048, heads=8, kv_heads=2, head_dim=128, phase=phase)
    p = predict(wl, Causal(), hw)
    assert p.pattern.predicted_s == pytest.approx(sum(p.pattern.breakdown_s.values()))
    # Never faster than its compulsory HBM traffic or its matmul FLOPs at the peak.
    hw_p = load_profile(hw)
    floor = max(p.pattern.counts.bytes.compulsory / hw_p.get("memory_bw_bytes_per_s"),
                p.pattern.counts.flops.matmul / hw_p.matmul_peak("bf16"))
    assert p.pattern.predicted_s >= floor
    launches = {"fwd": 1, "decode": 1, "bwd": 3, "fwd+bwd": 4}[phase]
    assert p.pattern.breakdown_s["launch"] == pytest.approx(launches * 1e-6)


def test_backward_runs_splash_two_kernels_recomputing_s():
    # dK/dV kernel: S, dP, dV, dK; dQ kernel: S, dP, dQ -> 7 one-pass matmuls per tile.
    arr = Array.of(V4, "bf16")
    dkv, dq = step_cycles("dkv", 128, 128, 128, 128, arr), step_cycles("dq", 128, 128, 128, 128, arr)
    assert (dkv.mxu, dkv.fill_drain, dq.mxu, dq.fill_drain) == (4 * 32, 4 * 179, 3 * 32, 3 * 179)
    assert dkv.macs == 4 * 128**3 and dq.macs == 3 * 128**3


def _profile_text(name="TPU-v4"):
    return Path(shipped_profile_paths()[name]).read_text()


@pytest.mark.parametrize("field", ["mxu_rows", "mxu_cols", "mxus_per_core", "mxu_fill_drain_cycles",
                                   "grid_step_overhead_cycles", "vmem_bytes_per_core",
                                   "vector_ops_per_masked_score"])
def test_missing_systolic_field_is_refused_in_one_line_naming_it(tmp_path, field, capsys):
    text = "\n".join(line for line in _profile_text().splitlines() if not line.startswith(field + ":"))
    path = tmp_path / "tpu.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=rf"missing required field '{field}' for kind systolic"):
        load_profile_file(path)
    code, _, err = run(capsys, "hw", "check", str(path))
    assert code == 2 and field in err and len(err.strip().splitlines()) == 1


def test_kind_specific_fields_stay_with_their_kind(tmp_path):
    gpu_field = _profile_text() + "smem_bytes_per_unit: {value: 1, unit: KiB, source: x}\n"
    (tmp_path / "a.yaml").write_text(gpu_field)
    with pytest.raises(ProfileError, match=r"unknown field 'smem_bytes_per_unit' for kind systolic"):
        load_profile_file(tmp_path / "a.yaml")
    h100 = Path(shipped_profile_paths()["H100-SXM"]).read_text()
    (tmp_path / "b.yaml").write_text(h100 + "mxu_rows: {value: 128, unit: count, source: x}\n")
    with pytest.raises(ProfileError, match=r"unknown field 'mxu_rows' for kind gpu"):
        load_profile_file(tmp_path / "b.yaml")


def test_cli_hw_check_list_predict_and_speedup(capsys):
    for name in ("TPU-v4", "TPU-v5e"):
        code, out, _ = run(capsys, "hw", "check", str(shipped_profile_paths()[name]))
        assert code == 0 and out.startswith(f"ok: {name} (systolic)")
    code, out, _ = run(capsys, "hw", "list", "--json")
    assert {r["name"]: r["kind"] for r in json.loads(out)}["TPU-v5e"] == "systolic"
    code, out, _ = run(capsys, "hw", "list")
    assert code == 0 and "systolic" in out and "TPU-v4" in out
    cases = [["--pattern", "dense", "--seq", "4096"], ["--pattern", "causal", "--seq", "4096"],
             ["--pattern", "dense", "--seq", "4096", "--kv-heads", "2"],
             ["--pattern", "neighborhood", "--tokens", "32x32", "--window", "7x7"]]
    for args in cases:
        code, out, _ = run(capsys, "predict", "--hw", "TPU-v5e", "--heads", "8", *args, "--json")
        d = json.loads(out)
        assert code == 0 and d["hw"]["kind"] == "systolic"
        assert d["time_s"]["predicted"] == pytest.approx(sum(d["time_s"]["breakdown"].values()))
        assert d["bound_by"] in ("hbm", *d["time_s"]["breakdown"])
    code, out, _ = run(capsys, "speedup", "--hw", "TPU-v4", "--hw", "H100-SXM", "--pattern", "causal",
                       "--seq", "8192", "--heads", "8", "--json")
    rows = {r["hw"]["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["TPU-v4"]["energy_j"] > 0
    assert rows["TPU-v4"]["speedup_vs_dense"]["predicted"] == pytest.approx(2, rel=0.05)


def test_neighborhood_on_a_grid_prices_flattened_flex_blocks():
    wl = Workload.on_grid((32, 32), heads=4, head_dim=64)
    p = predict(wl, Neighborhood(window=(7, 7)), V4)
    assert p.pattern.counts.tiles.q_tile == (128,)
    assert p.speedup_vs_dense["predicted"] > 1
