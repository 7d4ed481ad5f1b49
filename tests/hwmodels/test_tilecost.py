"""Tile-level GPU time: bounds ordering, breakdown bookkeeping and the LPT scheduler."""
import heapq
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, predict
from attnsim.hwmodels import list_profiles, load_profile
from attnsim.hwmodels.scheduling import lpt_makespan
from attnsim.patterns import Causal, Neighborhood, Sliding
from attnsim.tiles import Tiling

from ..strategies import unpadded_gna

GPUS = [p for p in list_profiles() if p.kind == "gpu"]


@st.composite
def unpadded_problem(draw):
    """Self-attention whose tiles divide the (dilated) grid: no padding anywhere."""
    phase = draw(st.sampled_from(["fwd", "bwd", "fwd+bwd"]))
    common = dict(heads=draw(st.integers(1, 48)), batch=draw(st.integers(1, 4)),
                  head_dim=draw(st.sampled_from([64, 128])), phase=phase)
    if draw(st.booleans()):
        tile = draw(st.sampled_from([32, 64, 128]))
        n = tile * draw(st.integers(1, 24))
        wl = Workload.sequence(n, **common)
        window = draw(st.integers(1, n))
        pattern = draw(st.sampled_from([Causal(), Sliding(window), Sliding(window, causal=True)]))
        return wl, pattern, Tiling((tile,), (tile,), "block-sparse")
    return draw(unpadded_gna(ranks=(2, 3), tiles=(2, 4, 8, 16), max_m=6, **common))


@settings(max_examples=600)
@given(unpadded_problem(), st.sampled_from(GPUS))
def test_predicted_speedup_is_below_the_tile_bound_up_to_dense_wave_quantization(case, hw):
    # Why the factor: dense runs n equal CTAs in ceil(n/slots) waves, while the pattern's
    # uneven CTAs can pack tighter than whole waves; beyond that factor every per-tile cost of
    # the pattern is at least dense's (masking only adds) and fixed costs are shared.
    wl, pattern, tiling = case
    r = predict(wl, pattern, hw, tiling=tiling)
    s = r.speedup_vs_dense
    waves = r.dense.tile_time.waves
    slack = max(math.ceil(w) / w for w in waves.values())
    assert s["predicted"] <= s["tile"] * slack * (1 + 1e-9)
    assert s["tile"] <= s["flop"] * (1 + 1e-12)


@settings(max_examples=200)
@given(unpadded_problem(), st.sampled_from(GPUS))
def test_breakdown_adds_up_and_every_part_is_non_negative(case, hw):
    wl, pattern, tiling = case
    r = predict(wl, pattern, hw, tiling=tiling)
    for priced in (r.pattern, r.dense):
        parts = priced.breakdown_s
        assert all(v >= 0 for v in parts.values())
        assert priced.predicted_s == pytest.approx(sum(parts.values()))
        assert priced.predicted_s >= priced.counts.bytes.compulsory / hw.get("memory_bw_bytes_per_s")
        in_place = hw.natten_tiles is not None and not hw.natten_tiles.token_permute  # CUTLASS-2.x
        needs_layout = len(tiling.q_tile) > 1 or any(
            getattr(rule, "dilation", 1) > 1 for rule in pattern.layout(wl).rules)
        assert ("token_permutation" in parts) == (needs_layout and not in_place)


def test_fully_block_sparse_gna_pays_no_masking_and_na_does():
    # HunyuanVideo, NATTEN Hopper 2x8x8 tiles (profiler config): GNA stride 16x8x8 visits only
    # full tiles; plain NA masks every visited tile.
    wl = Workload.on_grid((30, 48, 80), heads=24, head_dim=128)
    tiling = Tiling((2, 8, 8), (2, 8, 8), "range")
    gna = predict(wl, Neighborhood((18, 24, 24), stride=(16, 8, 8)), "H100-SXM", tiling=tiling)
    na = predict(wl, Neighborhood((18, 24, 24)), "H100-SXM", tiling=tiling)
    assert gna.pattern.breakdown_s["masking"] == 0 < na.pattern.breakdown_s["masking"]
    assert gna.speedup_vs_dense["predicted"] > na.speedup_vs_dense["predicted"]


def test_padding_alone_is_masked_for_dense_not_every_tile():
    # 30 is not a multiple of 4: only KV tiles holding padding need the (padding) mask.
    wl = Workload.on_grid((30, 48, 80), heads=24, head_dim=128)
    r = predict(wl, Neighborhood((18, 24, 24)), "H100-SXM", tiling=Tiling((4, 4, 8), (4, 4, 8), "range"))
    dense_tiles = r.dense.counts.tiles
    assert 0 < dense_tiles.masked == dense_tiles.visited - dense_tiles.full < dense_tiles.visited


def test_decode_splits_kv_to_fill_the_gpu():
    # One query per head and 8 heads cannot fill 132 SMs without split-KV (FlashDecoding).
    wl = Workload.sequence(131072, heads=8, head_dim=128, phase="decode")
    r = predict(wl, Causal(), "H100-SXM")
    assert 128 <= r.pattern.tile_time.ctas["fwd"] <= 132  # 8 heads x 16 splits: one wave
    assert r.pattern.breakdown_s["memory_floor"] > 0  # decode reads the KV cache: HBM-bound


def _brute_lpt(durations, counts, slots):
    loads = [0.0] * slots
    for w in sorted((w for w, m in zip(durations, counts) for _ in range(m)), reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + w)
    return max(loads)


@settings(max_examples=500)
@given(st.lists(st.tuples(st.one_of(st.floats(0.01, 50), st.sampled_from([0.1, 1.0, 14.23277734333864])),
                          st.integers(0, 40)), min_size=1, max_size=6),
       st.integers(1, 16))
def test_bulk_lpt_equals_one_by_one_lpt(jobs, slots):
    durations, counts = zip(*jobs)
    assert lpt_makespan(np.array(durations), np.array(counts), slots) == pytest.approx(
        _brute_lpt(durations, counts, slots), rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.001, 20), st.integers(1, 3000)), min_size=1, max_size=8),
       st.integers(1, 300))
def test_bulk_lpt_equals_one_by_one_lpt_at_gpu_sizes(jobs, slots):
    """Hundreds of slots and thousands of CTAs per duration, as on an H100 (264 slots)."""
    durations, counts = zip(*jobs)
    assert lpt_makespan(np.array(durations), np.array(counts), slots) == pytest.approx(
        _brute_lpt(durations, counts, slots), rel=1e-9)


@pytest.mark.parametrize("drop,edit,match", [
    ("tile_mma_efficiency", None, "missing required field 'tile_mma_efficiency'"),
    (None, ("value: 0.75, unit: fraction", "value: 1.5, unit: fraction"), "a fraction must be at most 1"),
    (None, ("1d: 128/128", "1d: 128x2/128"), r"natten_tiles.forward\[1\].1d: expected 1 positive extents"),
])
def test_bad_tile_model_fields_are_refused_by_name(tmp_path, drop, edit, match):
    from attnsim.errors import ProfileError
    from attnsim.hwmodels.profile import load_profile_file

    text = open(load_profile("H100-SXM").path).read()
    if drop:
        text = "\n".join(line for line in text.splitlines() if not line.startswith(drop))
    if edit:
        text = text.replace(*edit)
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=match):
        load_profile_file(path)
