"""attnsim sweep: the vectorised engine equals the exact count+price of every point."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from attnsim.errors import AttnsimError
from attnsim.formulas import formula, values
from attnsim.patterns import REGISTRY, Pattern
from attnsim.spec import build_pattern, build_workload
from attnsim.sweep_eval import WORKLOAD_SYMBOLS, evaluate_chunk, exact_row, flags_at, form_key, vectorisable
from attnsim.sweep_run import run_sweep
from attnsim.sweep_spec import parse_spec

# Two flag sets per vectorisable pattern: same form key, different numbers (tokens for grids).
FLAG_PAIRS = {
    "dense": ({}, {}),
    "causal": ({}, {}),
    "sliding": ({"window": "64", "causal": "all"}, {"window": "200", "causal": "all"}),
    "neighborhood": ({"window": "5x7", "dilation": "2x1", "stride": "1x3"},
                     {"window": "3x9", "dilation": "1x2", "stride": "2x2"}),
    "sinks": ({"window": "64", "sinks": 4}, {"window": "33", "sinks": 9}),
    "swin": ({"window": "4x8", "shift": "2x4"}, {"window": "8x4", "shift": "0x1"}),
    "halo": ({"block_size": "4x8", "halo": "1x2"}, {"block_size": "8x4", "halo": "3x0"}),
    "sliding-tile": ({"sta_tile": "4x4", "window": "3x3"}, {"sta_tile": "2x8", "window": "5x1"}),
    "power": ({"block_size": "32", "window_blocks": 1, "sink_blocks": 0},
              {"block_size": "16", "window_blocks": 3, "sink_blocks": 2}),
}
# Multi-op patterns whose closed forms also give the other softmax FLOPs and kernel count.
OP_FLAG_PAIRS = {
    "mla": ({"kv_lora_rank": 32, "rope_dim": 16, "causal": "all", "mla_mode": "auto"},
            {"kv_lora_rank": 48, "rope_dim": 8, "causal": "all", "mla_mode": "auto"}),
    "linear": ({"chunk": 16, "causal": "all"}, {"chunk": 7, "causal": "all"}),
}
NOT_SWEPT = {"graph": "its edges come from a file: one pattern per file, nothing numeric to sweep"}
GRID_PATTERNS = {"neighborhood", "swin", "halo", "sliding-tile"}


def _shape(name: str) -> dict:
    return {"tokens": "24x32"} if name in GRID_PATTERNS else {"seq": 512}


def _flags(name: str, flags: dict, **wl) -> dict:
    spec = parse_spec({"grid": {"pattern": name, **_shape(name), **flags, **wl}})
    return flags_at(spec, {k: 0 for k in spec.axes})


def test_every_vectorisable_pattern_is_covered():
    vector = {n for n, c in REGISTRY.items() if vectorisable(c.__new__(c))}
    assert vector == set(FLAG_PAIRS) | set(NOT_SWEPT)


@pytest.mark.parametrize("name", sorted(FLAG_PAIRS) + sorted(OP_FLAG_PAIRS))
@pytest.mark.parametrize("phase", ["fwd", "bwd", "fwd+bwd"])
def test_form_key_decides_the_form(name, phase):
    """The vectorised engine computes one closed form per form key: prove that numbers never
    change a form's expressions."""
    p1, p2 = (build_pattern(_flags(name, f)) for f in {**FLAG_PAIRS, **OP_FLAG_PAIRS}[name])
    assert form_key(p1) == form_key(p2)
    rank = 2 if name in GRID_PATTERNS else 1
    assert formula(p1, phase, rank).exprs == formula(p2, phase, rank).exprs


@pytest.mark.parametrize("name", sorted(FLAG_PAIRS))
def test_pattern_values_ignore_batch_and_heads(name):
    """Validity and the pattern's symbol values are computed once per shape, not per batch/heads."""
    for flags in FLAG_PAIRS[name]:
        seen = set()
        for batch, heads, kv in ((1, 1, 1), (3, 8, 2), (2, 6, 6)):
            f = _flags(name, flags, batch=batch, heads=heads, kv_heads=kv)
            wl, p = build_workload(f), build_pattern(f)
            p.check(wl)
            seen.add(tuple(sorted((k, v) for k, v in values(wl, p).items() if k not in WORKLOAD_SYMBOLS)))
        assert len(seen) == 1


def _assert_rows_equal(spec):
    out = evaluate_chunk(spec, 0, spec.points)
    for i in range(spec.points):
        co = dict(zip(spec.axes, np.unravel_index(i, spec.shape)))
        row = exact_row(flags_at(spec, co), "roofline")
        assert bool(out["error"][i]) == ("error" in row), (i, out["error"][i], row.get("error"))
        if "error" in row:
            continue
        for k in ("pairs_per_head", "matmul_flops", "exp", "compulsory_bytes", "roofline_s", "time_s",
                  "baseline_time_s", "speedup", "speedup_flop"):
            assert out[k][i] == pytest.approx(row[k], rel=1e-12), (k, i)
        assert out["bound_by"][i] == row["bound_by"]
    return out


@pytest.mark.parametrize("name", sorted(FLAG_PAIRS))
def test_vectorised_equals_exact(name):
    flags = {k: list(dict.fromkeys(v for v in (a.get(k), b.get(k)) if v is not None))
             for a, b in [FLAG_PAIRS[name]] for k in a}
    grid = {"hw": ["H100-SXM", "EPYC-2vCPU", "MI300X"], "dtype": ["bf16", "fp32"], "pattern": name,
            **{k: v if len(v) > 1 else v[0] for k, v in flags.items() if k != "causal"},
            "heads": [4, 6], "kv_heads": [2, 3], "batch": [1, 3], "phase": ["fwd", "bwd"],
            **({"tokens": ["24x32", "16x40"]} if name in GRID_PATTERNS else {"seq": [512, 1000], "kv_seq": [None, 1024]})}
    if "causal" in flags:
        grid["causal"] = flags["causal"]
    out = _assert_rows_equal(parse_spec({"grid": grid}))
    assert (out["engine"] == "vector").sum() > 0 and (out["error"] == "").sum() > 0


@pytest.mark.parametrize("name", sorted(OP_FLAG_PAIRS))
def test_multi_op_forms_vectorise_and_equal_exact(name):
    """MLA and linear attention: the vector engine prices them from their forms (other softmax
    FLOPs and kernel launches included) and every row equals the exact count and price."""
    a, b = OP_FLAG_PAIRS[name]
    grid = {"hw": ["H100-SXM", "EPYC-2vCPU"], "dtype": ["bf16", "fp32"], "pattern": name,
            **{k: list(dict.fromkeys((a[k], b[k]))) if a[k] != b[k] else a[k] for k in a},
            "causal": ["all", "0"], "heads": [4, 6], "kv_heads": [2, 3], "batch": [1, 3],
            "phase": ["fwd", "bwd", "fwd+bwd", "decode"], "seq": [512, 1000], "decode_tokens": [1, 5],
            "head_dim": 64}
    if name == "mla":
        grid["mla_mode"] = ["auto", "up-project", "absorbed"]
    out = _assert_rows_equal(parse_spec({"grid": grid}))
    assert (out["engine"] == "vector").sum() > len(out["engine"]) // 4 and (out["error"] == "").sum() > 0


@settings(max_examples=25, deadline=None)
@given(seq=st.lists(st.integers(16, 3000), min_size=1, max_size=3, unique=True),
       window=st.lists(st.integers(1, 600), min_size=1, max_size=3, unique=True),
       causal=st.sampled_from(["all", "0"]), phase=st.sampled_from(["fwd", "decode", "fwd+bwd"]),
       baseline=st.sampled_from(["dense", "causal"]))
def test_random_sliding_grids(seq, window, causal, phase, baseline):
    _assert_rows_equal(parse_spec({"grid": {"pattern": "sliding", "seq": seq, "window": window, "causal": causal,
                                            "phase": phase, "baseline": baseline, "heads": [2, 4], "kv_heads": 2,
                                            "decode_tokens": [1, 3]}}))


def test_multi_op_patterns_use_the_exact_engine():
    spec = parse_spec({"grid": {"pattern": "moba", "block_size": ["256", "512"], "top_k": [2, 3], "causal": "all",
                                "seq": 4096, "heads": 4}})
    out = evaluate_chunk(spec, 0, spec.points)
    assert set(out["engine"]) == {"exact"}
    row = exact_row(flags_at(spec, {k: 0 for k in spec.axes}), "roofline")
    assert out["time_s"][0] == row["time_s"] and out["speedup"][0] > 1


def test_predict_level_matches_predict():
    from attnsim.predict_api import predict

    spec = parse_spec({"level": "predict", "grid": {"pattern": "neighborhood", "tokens": "32x32", "window": ["7x7", "13x13"],
                                                   "heads": 4, "q_tile": [None, "8x8"], "kv_tile": [None, "8x8"]}})
    out = evaluate_chunk(spec, 0, spec.points)
    for i in range(spec.points):
        f = flags_at(spec, dict(zip(spec.axes, np.unravel_index(i, spec.shape))))
        if out["error"][i]:
            assert f["q_tile"] is None or f["kv_tile"] is None  # one tile without the other is refused
            continue
        from attnsim.tiles import TilingRequest
        from attnsim.spec import parse_dims

        r = predict(build_workload(f), build_pattern(f), "H100-SXM",
                    TilingRequest(parse_dims("q", f["q_tile"]), parse_dims("kv", f["kv_tile"])))
        assert out["time_s"][i] == r.pattern.predicted_s and out["speedup"][i] == r.speedup_vs_dense["predicted"]


def test_chunks_and_best_configs(tmp_path):
    spec = parse_spec({"grid": {"pattern": "sliding", "causal": "all", "seq": {"from": 1024, "to": 16384, "times": 2},
                                "window": [64, 128, 256], "heads": [8, 16]}})
    whole = evaluate_chunk(spec, 0, spec.points)
    from attnsim.sweep_run import local_chunks

    result = run_sweep(spec, str(tmp_path / "out.csv"), local_chunks(spec, size=7), keep=True)
    assert result.points == spec.points == 30
    for k in ("time_s", "speedup"):
        np.testing.assert_array_equal(result.kept[k], whole[k])
    best = np.nanmax(np.where(whole["error"] == "", whole["speedup"], np.nan))
    assert result.best["speedup"][0] == best
    assert list(result.best["speedup"]) == sorted(result.best["speedup"], reverse=True)
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert len(lines) == spec.points + 1 and lines[0].startswith("pattern,causal,seq,window,heads")
    assert not list(tmp_path.glob("*.partial"))


def test_parquet_roundtrip(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    spec = parse_spec({"grid": {"pattern": "causal", "seq": [1024, 2048], "heads": [1, 2]}})
    run_sweep(spec, str(tmp_path / "o.parquet"))
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.num_rows == 4 and table.column("seq").to_pylist() == [1024, 1024, 2048, 2048]


@pytest.mark.parametrize("doc,needle", [
    ({"grid": {"seq": 1, "windw": 3}}, "unknown grid key 'windw'"),
    ({"grid": {"seq": {"from": 10, "to": 1, "step": 1}}}, "empty range"),
    ({"grid": {"seq": []}}, "empty list"),
    ({"grid": {"heads": 2}}, "needs seq"),
    ({"grid": {"seq": 8}, "levle": "x"}, "unknown key 'levle'"),
    ({"grid": {"seq": 8, "q_tile": "64"}}, "tiling key"),
    ({"grid": {"seq": {"from": 1, "to": 8}}}, "exactly one of step"),
    ({"grid": {"seq": 8}, "plot": {"x": "window", "value": "speedup"}}, "plot.x"),
])
def test_bad_specs_name_the_key(doc, needle):
    with pytest.raises(AttnsimError, match=needle):
        parse_spec(doc)


def test_ranges():
    s = parse_spec({"grid": {"seq": {"from": 1024, "to": 8192, "times": 2}, "window": {"from": 64, "to": 256, "step": 64},
                             "head_dim": {"from": 64, "to": 256, "num": 3, "scale": "log"}}})
    assert s.axes["seq"] == (1024, 2048, 4096, 8192)
    assert s.axes["window"] == (64, 128, 192, 256)
    assert s.axes["head_dim"] == (64, 128, 256)


def test_huge_grid_needs_yes():
    s = parse_spec({"grid": {"seq": {"from": 1, "to": 10**6, "step": 1}, "heads": {"from": 1, "to": 10**6, "step": 1}}})
    with pytest.raises(AttnsimError, match="1,000,000,000,000 points"):
        s.check_size(yes=False)
    s.check_size(yes=True)


@pytest.mark.parametrize("level", ["roofline", "predict"])
def test_dask_local_cluster_equals_single_process(level):
    """Roofline chunks stream in grid order; tile-level chunks run pattern-major on the workers
    and come back re-ordered: both equal the single-process sweep, column for column."""
    pytest.importorskip("dask.distributed")
    from attnsim.sweep_run import dask_chunks

    spec = parse_spec({"level": level, "grid": {"heads": [4, 8], "pattern": ["sliding", "sinks"], "window": [64, 300],
                                                "seq": [1024, 4096], "phase": ["fwd", "bwd"]}})
    local = run_sweep(spec, keep=True)
    dist = run_sweep(spec, source=dask_chunks(spec, None, 2, size=5), keep=True)
    assert list(dist.kept) == list(local.kept)
    for k, v in local.kept.items():
        np.testing.assert_array_equal(dist.kept[k], v)
    assert dist.points == local.points == 32 and local.valid > 0


def test_pattern_major_order_is_a_permutation_with_patterns_outermost():
    from attnsim.sweep_run import pattern_major

    spec = parse_spec({"grid": {"seq": [1, 2, 3], "pattern": "sliding", "window": [7, 8], "heads": [1, 2]}})
    idx = pattern_major(spec, 0, spec.points)
    assert sorted(idx) == list(range(spec.points))
    windows = [spec.axes["window"][np.unravel_index(i, spec.shape)[2]] for i in idx]
    assert windows == [7] * 6 + [8] * 6


def test_tile_level_sweeps_run_pattern_major_and_keep_grid_order():
    """A local tile-level sweep computes pattern-major chunks (progress as they finish) and hands
    every column on in grid order: equal to evaluating the grid in order."""
    from attnsim.sweep_run import local_chunks

    spec = parse_spec({"level": "predict", "grid": {"heads": [2, 4], "pattern": "neighborhood", "tokens": "16x16",
                                                    "window": ["3x3", "5x5", "7x7"], "stride": ["1x1", "2x2"]}})
    done: list[int] = []
    result = run_sweep(spec, source=local_chunks(spec, size=5), keep=True, progress=done.append)
    direct = evaluate_chunk(spec, 0, spec.points)
    assert list(result.kept) == list(direct)
    for k, v in direct.items():
        np.testing.assert_array_equal(result.kept[k], v)
    assert sum(done) == result.points == spec.points and done == [5, 5, 2]


def _predict_row(f: dict) -> dict:
    """A sweep row computed through attnsim.predict and its report objects (the reference)."""
    from attnsim.cli.options import BASELINES
    from attnsim.predict_api import predict
    from attnsim.spec import parse_dims
    from attnsim.tiles import TilingRequest

    r = predict(build_workload(f), build_pattern(f), f["hw"],
                TilingRequest(parse_dims("q", f["q_tile"]), parse_dims("kv", f["kv_tile"]), f["policy"]),
                BASELINES[f["baseline"]]())
    s, c, p = r.speedup_vs_dense, r.pattern.counts, r.pattern
    return {"pairs_per_head": c.pairs_per_head, "matmul_flops": c.flops.matmul, "exp": c.flops.exp,
            "compulsory_bytes": c.bytes.compulsory, "bound_by": p.roofline.bound_by, "roofline_s": p.roofline.time_s,
            "time_s": p.predicted_s, "baseline_time_s": r.dense.predicted_s, "speedup": s["predicted"],
            "speedup_flop": s["flop"], "speedup_tile": s["tile"], "speedup_roofline": s["roofline"]}


@pytest.mark.parametrize("name", sorted(FLAG_PAIRS))
def test_tile_rows_equal_predict(name, monkeypatch):
    """The sweep's lean tile-model rows (attnsim.sweep_tile) equal predict exactly: profiles that
    permute tokens or tile in place, every phase, default and explicit tiles and policies, GQA."""
    import attnsim.sweep_eval as sweep_eval

    lean, tile_row = [], sweep_eval.tile_row
    monkeypatch.setattr(sweep_eval, "tile_row", lambda *a: lean.append(tile_row(*a)) or lean[-1])
    flags = {k: list(dict.fromkeys(v for v in (a.get(k), b.get(k)) if v is not None))
             for a, b in [FLAG_PAIRS[name]] for k in a}
    grid = {"level": "predict", "grid": {
        "hw": ["H100-SXM", "A100-SXM4-80GB", "B200"], "pattern": name,
        **{k: v if len(v) > 1 else v[0] for k, v in flags.items()},
        "heads": [4, 6], "kv_heads": [2], "batch": [1, 3], "dtype": ["bf16", "fp8"],
        "phase": ["fwd", "bwd", "fwd+bwd"] + ([] if name in GRID_PATTERNS else ["decode"]),
        "baseline": ["dense", "causal"] if name not in GRID_PATTERNS else "dense",
        **({"tokens": ["24x32", "16x40"], "q_tile": [None, "4x8"], "kv_tile": [None, "8x8"],
            "policy": [None, "block-sparse", "dense"]} if name in GRID_PATTERNS else
           {"seq": [512, 1000], "q_tile": [None, 64], "kv_tile": [None, 128], "policy": [None, "range"]})}}
    spec = parse_spec(grid)
    idx = np.random.default_rng(len(name)).choice(spec.points, 150, replace=False)  # of ~10k points
    out = evaluate_chunk(spec, 0, 0, idx=idx)
    valid = int((out["error"] == "").sum())
    assert set(out["engine"]) == {"predict"} and valid > 15
    assert sum(r is not None for r in lean) == valid  # every valid row took the lean path
    for i, point in enumerate(idx):
        f = flags_at(spec, dict(zip(spec.axes, np.unravel_index(point, spec.shape))))
        try:
            want = _predict_row(f)
        except AttnsimError as err:
            assert out["error"][i] == str(err)
            continue
        got = {k: out[k][i] for k in want}
        assert got == {k: v if v is not None else got[k] for k, v in want.items()}, (i, f)


def test_tile_rows_cover_the_gpu_tile_model_only():
    from attnsim.hwmodels import load_profile
    from attnsim.sweep_tile import covered

    na, moba = build_pattern(_flags("neighborhood", FLAG_PAIRS["neighborhood"][0])), build_pattern(
        {"pattern": "moba", "block_size": "64", "top_k": 2, "causal": "all"})
    assert covered(na, load_profile("H100-SXM"))
    assert not covered(moba, load_profile("H100-SXM"))          # multi-op: predict
    assert not covered(na, load_profile("EPYC-2vCPU"))          # CPU (calibrated kernels): predict
    assert not covered(na, load_profile("TPU-v4"))              # systolic stage model: predict
