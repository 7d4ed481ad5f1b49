"""Free-space 4f target: golden stage times and energies derived by hand on a small profile, the
in-aperture layouts checked against a brute-force 4f correlation (FFT, conjugate filter: what
the lenses compute), profile refusals, predict() integration and the ConvShareViT case."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from attnsim import AttnsimError, PricingError, ProfileError, Workload, count, predict
from attnsim.cases.optical import (SCOPES, Setting, convsharevit_comparison, optical_scopes, render_comparison,
                                   render_sweep, sweep_optical, with_frame_clock)
from attnsim.cli import main
from attnsim.hwmodels import load_profile, load_profile_file
from attnsim.hwmodels.optical import (STAGES, _packed_job, attention_jobs, cell_layout, check_optical_profile,
                                      price_jobs, price_optical, shared_conv_job)
from attnsim.hwmodels.profile import Quantity, parse_profile
from attnsim.patterns import Causal, Dense, MoBA

SHIPPED = ("Optical4f-LCoS", "Optical4f-DMD")

# A small 4f system with round numbers, so every stage can be derived by hand.
TINY = """
schema_version: 1
name: Tiny4f
kind: optical4f
matmul_flops_per_s: {fp32: {value: 1, unit: TFLOP/s, source: test}}
vector_flops_per_s: {value: 10, unit: GFLOP/s, source: test}
exp_per_s: {value: 1, unit: Gop/s, source: test}
memory_bw_bytes_per_s: {value: 1, unit: GB/s, source: test}
memory_size_bytes: {value: 1, unit: GB, source: test}
launch_overhead_s: {value: 1, unit: us, source: test}
tdp_w: {value: 100, unit: W, source: test}
modulator_width_pixels: {value: 64, unit: pixels, source: test}
modulator_height_pixels: {value: 32, unit: pixels, source: test}
modulator_frame_rate_hz: {value: 1000, unit: Hz, source: test}
modulator_bit_depth: {value: 8, unit: bits, source: test}
filter_width_pixels: {value: 64, unit: pixels, source: test}
filter_height_pixels: {value: 32, unit: pixels, source: test}
filter_frame_rate_hz: {value: 500, unit: Hz, source: test}
filter_bit_depth: {value: 8, unit: bits, source: test}
dac_energy_per_sample_j: {value: 1, unit: pJ, source: test}
propagation_delay_s: {value: 2, unit: ns, source: test}
source_power_w: {value: 0.5, unit: W, source: test}
detector_width_pixels: {value: 64, unit: pixels, source: test}
detector_height_pixels: {value: 32, unit: pixels, source: test}
detector_frame_rate_hz: {value: 250, unit: Hz, source: test}
detector_bit_depth: {value: 12, unit: bits, source: test}
detector_exposure_s: {value: 1, unit: ms, source: test}
adc_energy_per_sample_j: {value: 10, unit: pJ, source: test}
"""


def tiny(**changes):
    data = yaml.safe_load(TINY)
    for field, value in changes.items():
        data[field]["value"] = value
    return parse_profile(data, "tiny.yaml")


def test_golden_dense_attention_stage_by_stage():
    # seq 8, 1 head, d 16: 64 (q, k) pairs. Cells are 4x4 pixels (ceil(sqrt(16)) = 4) in the
    # 64x32 aperture: 16 cols x 8 rows.
    #   Q·Kᵀ: 16 dot products per cell row -> 64/16 = 4 cell rows -> 1 frame; x4 sign passes = 4 frames,
    #         4 cell rows x 4 pixel rows x 4 = 64 detector rows.
    #   P·V: ceil(16/2) = 8 pairs per cell row -> 8 cell rows -> 1 frame; x2 sign passes = 2 frames,
    #        8 x 4 x 2 = 64 detector rows.
    # 6 frames, each writing the input and the filter; 128 rows x 64 px = 8192 samples.
    # encode 6/1000 Hz = 6 ms; load_filter 6/500 Hz = 12 ms; propagate 6 x 2 ns = 12 ns;
    # detect 6 x 1 ms = 6 ms; convert 128 rows / (32 rows x 250 Hz) = 16 ms.
    # host: 1 us launch + 64 exp / 1e9 = 64 ns + (softmax 4 x 64 + 8 rows x 16 = 384, plus 8192
    # samples) = 8576 ops / 1e10 = 857.6 ns + 8192 samples x 2 B (12 bits) / 1e9 B/s = 16.384 us.
    hw = tiny()
    t = price_optical(count(Workload.sequence(8, head_dim=16), Dense()), hw)
    host = 1e-6 + 64e-9 + 857.6e-9 + 16.384e-6
    expected = {"encode": 6e-3, "load_filter": 12e-3, "propagate": 12e-9, "detect": 6e-3, "convert": 16e-3,
                "host": host}
    assert tuple(t.breakdown_s) == STAGES
    for stage, seconds in expected.items():
        assert t.breakdown_s[stage] == pytest.approx(seconds, rel=1e-12), stage
    assert t.bound_by == "convert"
    # DAC: 6 frames x 2048 pixels x 1 pJ on each modulator; light: 0.5 W x 6 ms of exposure;
    # ADC: 8192 samples x 10 pJ; host: 100 W x host time (upper bound).
    assert t.energy_j == pytest.approx({"encode_dac": 12.288e-9, "filter_dac": 12.288e-9, "light_source": 3e-3,
                                        "adc": 81.92e-9, "host_board_power_bound": 100 * host}, rel=1e-12)


def test_golden_bit_slices_multiply_frames():
    # 1-bit modulator: 8 slices of an 8-bit operand; 3-bit filter: ceil(8/3) = 3. Q·Kᵀ: 1 frame x 24 x 4 = 96,
    # rows 4 x 4 x 96 = 1536; P·V: 1 x 24 x 2 = 48, rows 8 x 4 x 48 = 1536.
    jobs = attention_jobs(count(Workload.sequence(8, head_dim=16), Dense()),
                          tiny(modulator_bit_depth=1, filter_bit_depth=3))
    assert [(j.name, j.frames, j.input_loads, j.filter_loads, j.rows_read) for j in jobs] == [
        ("qk", 96, 96, 96, 1536), ("pv", 48, 48, 48, 1536)]


def test_golden_packing_across_batch_and_heads():
    # batch 2 x 3 heads x 64 pairs = 384 dot products. Q·Kᵀ: 384/16 = 24 cell rows = 3 frames of 8 -> x4 = 12;
    # P·V: 384/8 = 48 cell rows = 6 frames -> x2 = 12.
    jobs = attention_jobs(count(Workload.sequence(8, batch=2, heads=3, head_dim=16), Dense()), tiny())
    assert [(j.frames, j.rows_read) for j in jobs] == [(12, 24 * 4 * 4), (12, 48 * 4 * 2)]


def test_golden_shared_convolution_job_and_stages():
    # 20 maps of 64 values (8x8 cells): 8 cols x 4 rows; ceil(20/8) = 3 cell rows = 1 frame, x4 sign passes
    # = 4 frames per kernel, 16 for 4 kernels; filter written 4 kernels x 1 slice x 2 sign parts = 8 times;
    # rows 3 x 8 x 4 x 4 kernels = 384. encode 16 ms, load_filter 8/500 = 16 ms, propagate 32 ns,
    # detect 16 ms, convert 384/(32 x 250) = 48 ms; host 1 us + 24576 samples / 1e10 + 49152 B / 1e9.
    hw = tiny()
    job = shared_conv_job("proj", 20, 64, 4, hw)
    assert (job.frames, job.input_loads, job.filter_loads, job.rows_read) == (16, 16, 8, 384)
    t = price_jobs([job], 0, 0, hw)
    assert t.breakdown_s == pytest.approx({"encode": 16e-3, "load_filter": 16e-3, "propagate": 32e-9,
                                           "detect": 16e-3, "convert": 48e-3,
                                           "host": 1e-6 + 2.4576e-6 + 49.152e-6}, rel=1e-12)


def test_golden_convsharevit_projection_frames_on_the_lcos_profile():
    # ViT-B/16 batch 64: 12608 token maps of 768 values -> 28x28 cells; 1920x1152: 68 cols x 41 rows.
    # ceil(12608/68) = 186 cell rows -> ceil(186/41) = 5 frames x 4 sign passes (8-bit devices: 1 slice)
    # = 20 per projection, 80 for Q, K, V, O; rows 186 x 28 x 4 x 4 = 83328.
    job = shared_conv_job("projections", 64 * 197, 768, 4, load_profile("Optical4f-LCoS"))
    assert (job.frames, job.filter_loads, job.rows_read) == (80, 8, 83328)


def correlate_4f(frame, kernel):
    """What the lenses compute: transform, multiply by the filter's conjugate transform, transform
    back; zero-padded so nothing wraps. out[u, v] = sum over x, y of frame[x, y] kernel[x-u, y-v]."""
    shape = (frame.shape[0] + kernel.shape[0], frame.shape[1] + kernel.shape[1])
    spectrum = np.fft.fft2(frame, shape) * np.conj(np.fft.fft2(kernel, shape))
    return np.real(np.fft.ifft2(spectrum)), shape


def _cell(values, side):
    cell = np.zeros(side * side)
    cell[: values.size] = values
    return cell.reshape(side, side)


def _square_device(width: int, height: int):
    """A tiny profile whose modulator, filter and detector are all ``width x height`` pixels."""
    return tiny(modulator_width_pixels=width, modulator_height_pixels=height, filter_width_pixels=width,
                filter_height_pixels=height, detector_width_pixels=width, detector_height_pixels=height)


layouts = st.tuples(st.integers(2, 40), st.integers(2, 40), st.integers(1, 16), st.integers(0, 2 ** 16))


@given(layouts)
def test_qk_layout_puts_every_score_in_its_own_detector_cell(case):
    width, height, dim, seed = case
    hw, side = _square_device(width, height), int(np.ceil(np.sqrt(dim)))
    if width < side or height < side:
        with pytest.raises(PricingError, match="aperture"):
            cell_layout(hw, "qk", dim)
        return
    per_row, rows, cell_side = cell_layout(hw, "qk", dim)
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((rows, dim)), rng.standard_normal((per_row, dim))
    frame, kernel = np.zeros((height, width)), np.zeros((height, width))
    for i in range(rows):  # query maps down the first column of the input
        frame[i * side:(i + 1) * side, :side] = _cell(q[i], side)
    for j in range(per_row):  # key maps along the first row of the filter
        kernel[:side, j * side:(j + 1) * side] = _cell(k[j], side)
    out, shape = correlate_4f(frame, kernel)
    scores = np.array([[out[i * side, (-j * side) % shape[1]] for j in range(per_row)] for i in range(rows)])
    np.testing.assert_allclose(scores, q @ k.T, atol=1e-9)
    assert cell_side == side and rows * side <= height and per_row * side <= width  # fits the detector


@given(layouts)
def test_pv_layout_sums_weighted_values_in_one_cell_per_query(case):
    width, height, dim, seed = case
    hw, side = _square_device(width, height), int(np.ceil(np.sqrt(dim)))
    if width < side or height < side:
        return
    keys, rows, _ = cell_layout(hw, "pv", dim)
    rng = np.random.default_rng(seed)
    p, v = rng.random((rows, keys)), rng.standard_normal((keys, dim))
    frame, kernel = np.zeros((height, width)), np.zeros((height, width))
    for j in range(keys):  # value maps along the first row of the input
        frame[:side, j * side:(j + 1) * side] = _cell(v[j], side)
    for i in range(rows):  # query i's probabilities as deltas at the key cells of filter row i
        for j in range(keys):
            kernel[i * side, j * side] = p[i, j]
    out, shape = correlate_4f(frame, kernel)
    for i in range(rows):
        block = np.roll(out, i * side, axis=0)[:side, :side]  # the cell at u = -i*side, v = 0
        np.testing.assert_allclose(block.reshape(-1)[:dim], p[i] @ v, atol=1e-9)
    assert (2 * keys - 1) * side <= width  # a query's output row, cross terms included, fits


@given(st.integers(0, 5000), st.integers(1, 40), st.integers(1, 40), st.integers(1, 9))
def test_packing_uses_the_fewest_frames(items, per_row, rows, passes):
    job = _packed_job("x", items, per_row, rows, 4, passes)
    logical = job.frames // passes
    assert job.frames % passes == 0 and logical * per_row * rows >= items
    assert (logical - 1) * per_row * rows < items or items == 0


def test_predict_reports_stages_that_sum_to_the_time():
    wl = Workload.sequence(1024, heads=8, head_dim=64)
    for name in SHIPPED:
        r = predict(wl, Causal(), name)
        p = r.pattern
        assert set(p.breakdown_s) == set(STAGES) and p.predicted_s == pytest.approx(sum(p.breakdown_s.values()))
        assert p.roofline.bound_by == max(p.breakdown_s, key=p.breakdown_s.get)
        assert {"encode_dac", "filter_dac", "light_source", "adc"} <= set(p.energy_j)
        assert any("ConvShareViT" in note for note in r.assumptions)
        # a causal mask halves the dot products, so never more frames than dense
        assert r.speedup_vs_dense["predicted"] >= 1


def test_op_graph_patterns_map_their_matmul_flops_to_dot_products():
    c = count(Workload.sequence(4096, heads=4, head_dim=64), MoBA(512, 2, causal=True))
    qk = attention_jobs(c, tiny(modulator_width_pixels=640, filter_width_pixels=640, detector_width_pixels=640))[0]
    per_row, rows = 80, 4  # 8x8 cells: 640/8 across, 32/8 down
    dots = -(-c.flops.qk // (2 * 64))
    assert qk.frames == -(-(-(-dots // per_row)) // rows) * 4


def test_training_phases_are_refused():
    with pytest.raises(PricingError, match="phase bwd"):
        price_optical(count(Workload.sequence(64, phase="bwd"), Dense()), tiny())


def test_apertures_too_small_for_the_head_dim_are_refused():
    # head dim 1025 needs a 33x33 cell; the aperture is 32 pixels tall
    with pytest.raises(PricingError, match="33x33-pixel cell, but the aperture is 64x32"):
        price_optical(count(Workload.sequence(64, head_dim=1025), Dense()), tiny())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_pass_hw_check(name, capsys):
    path = str(Path(load_profile(name).path))
    assert main(["hw", "check", path]) == 0 and f"ok: {name} (optical4f)" in capsys.readouterr().out
    check_optical_profile(load_profile(name))


def _text_with(tmp_path, field, value):
    data = yaml.safe_load(TINY)
    if value is None:
        del data[field]
    else:
        data[field]["value"] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# (field, value, match, refused by the generic loader alone)
BAD = [
    ("modulator_frame_rate_hz", 0, r"modulator_frame_rate_hz.value: must be positive", True),
    ("detector_frame_rate_hz", 0, r"detector_frame_rate_hz.value: must be positive", True),
    ("filter_bit_depth", None, r"missing required field 'filter_bit_depth' for kind optical4f", True),
    ("detector_bit_depth", None, r"missing required field 'detector_bit_depth'", True),
    ("detector_width_pixels", 32, r"detector_width_pixels \(32\) is smaller than modulator_width_pixels \(64\)",
     False),
    ("detector_height_pixels", 16, r"detector_height_pixels \(16\) is smaller than modulator_height_pixels", False),
    ("modulator_bit_depth", 7.5, r"modulator_bit_depth.value: must be a whole number of bits", False),
    ("detector_exposure_s", 5, r"detector_exposure_s \(0.005 s\) is longer than one detector frame", False),
]


@pytest.mark.parametrize("field,value,match,by_loader", BAD)
def test_bad_optical_profiles_are_refused_in_one_line_naming_the_field(tmp_path, capsys, field, value, match,
                                                                        by_loader):
    path = _text_with(tmp_path, field, value)
    with pytest.raises(ProfileError, match=match) as err:
        check_optical_profile(load_profile_file(path))  # the loader, then the cross-field check
    assert "\n" not in str(err.value)
    if by_loader:
        assert main(["hw", "check", str(path)]) == 2 and field in capsys.readouterr().err


def test_profiles_built_in_code_are_checked_too():
    hw = tiny()
    zero = replace(hw, fields={**hw.fields, "filter_frame_rate_hz": Quantity(0.0, 0, "Hz", "x")})
    with pytest.raises(ProfileError, match="filter_frame_rate_hz.value: must be positive"):
        price_optical(count(Workload.sequence(8, head_dim=16), Dense()), zero)


def test_frame_clock_keeps_the_photons_per_frame():
    hw = load_profile("Optical4f-LCoS")
    fast = with_frame_clock(hw, 3840, 2160, 1e6)
    assert fast.get("detector_exposure_s") == pytest.approx(0.5e-6)
    assert fast.get("source_power_w") * 0.5e-6 == pytest.approx(hw.get("source_power_w") * 10e-6)
    assert all(fast.get(f"{p}_width_pixels") == 3840 for p in ("modulator", "filter", "detector"))
    check_optical_profile(fast)


def test_convsharevit_comparison_names_the_dominating_stage_and_the_claim():
    r = convsharevit_comparison("Optical4f-LCoS")
    json.dumps(r)
    assert r["claim"]["value"] == 3.04 and "3.04" in r["claim"]["quote"]
    for scope in SCOPES:
        opt = r["optical"]["scopes"][scope]
        assert opt["bound_by"] == max(opt["breakdown_s"], key=opt["breakdown_s"].get)
        assert opt["time_s"] == pytest.approx(sum(opt["breakdown_s"].values()))
        assert r["speedup"][scope] == pytest.approx(r["gpu"]["scopes"][scope]["time_s"] / opt["time_s"])
    assert f"'{r['optical']['scopes']['block']['bound_by']}'" in r["summary"]
    render_comparison(r)


def test_the_comparison_refuses_swapped_profiles():
    with pytest.raises(AttnsimError, match="--hw H100-SXM is a gpu profile"):
        convsharevit_comparison("H100-SXM")
    with pytest.raises(AttnsimError, match="--gpu Optical4f-DMD is an optical4f profile"):
        sweep_optical("Optical4f-LCoS", "Optical4f-DMD")


def test_sweep_finds_the_crossover_and_speedups_grow_with_frame_rate():
    r = sweep_optical("Optical4f-LCoS", setting=Setting(batch=8))
    json.dumps(r)
    for scope in SCOPES:
        for row in r["speedup"][scope]:
            speedups = [p["speedup"] for p in row["points"]]
            assert speedups == sorted(speedups)
            wins = [p["frame_rate_hz"] for p in row["points"] if p["speedup"] >= 1]
            assert r["crossover_hz"][scope]["x".join(map(str, row["resolution"]))] == (min(wins) if wins else None)
    # the projections (weights in the filter, loaded once) cross over within the swept rates ...
    assert any(v is not None for v in r["crossover_hz"]["projections"].values())
    # ... and at 60 Hz (a video-rate SLM) the optical system loses everywhere
    assert all(row["points"][0]["speedup"] < 1 for scope in SCOPES for row in r["speedup"][scope])
    render_sweep(r, "projections")


def test_optical_scopes_add_up():
    hw, setting = load_profile("Optical4f-DMD"), Setting(batch=2)
    s = optical_scopes(setting, hw)
    for stage in ("encode", "load_filter", "propagate", "detect", "convert"):
        assert s["block"].breakdown_s[stage] == pytest.approx(s["core"].breakdown_s[stage]
                                                              + s["projections"].breakdown_s[stage])
