"""SQA and MoH: exact counts against naive head-by-head references and their closed forms."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.formulas import formula
from attnsim.patterns import MoH, SQA
from attnsim.patterns.opgraph import ops_of
from attnsim.spec import build_pattern

from .forms import assert_closed_form_equals_count


def _mask(wl: Workload, causal: bool) -> np.ndarray:
    """The dense or bottom-right causal mask, materialised."""
    q = np.arange(wl.q_len)[:, None] + (wl.kv_len - wl.q_len)
    k = np.arange(wl.kv_len)[None, :]
    return k <= q if causal else np.ones((wl.q_len, wl.kv_len), dtype=bool)


# -- SQA ---------------------------------------------------------------------------------------
@st.composite
def sqa_case(draw):
    hkv = draw(st.sampled_from([1, 2, 4]))
    heads = hkv * draw(st.sampled_from([1, 2, 4]))
    hq = draw(st.sampled_from([h for h in range(1, heads + 1) if h % hkv == 0 or hkv % h == 0]))
    phase = draw(st.sampled_from(["fwd", "bwd", "fwd+bwd", "decode"]))
    n = draw(st.integers(1, 40))
    kv = n + draw(st.integers(0, 20))
    common = dict(batch=draw(st.integers(1, 3)), heads=heads, kv_heads=hkv,
                  head_dim=draw(st.sampled_from([8, 64])), v_head_dim=draw(st.sampled_from([8, 32])),
                  dtype=draw(st.sampled_from(["bf16", "fp8", "fp32"])))
    if phase == "decode":
        wl = Workload.sequence(kv, phase="decode", decode_tokens=n, **common)
    else:
        wl = Workload.sequence(n, kv_len=kv, phase=phase, **common)
    return wl, SQA(hq, causal=draw(st.booleans()))


def naive_sqa_forward(wl: Workload, hq: int, causal: bool, rng) -> dict:
    """SQA as the paper writes it (Eq. 4-8) on random tensors, counting its own work: K/V heads
    repeated Hq/Hkv times, or queries repeated Hkv/Hq times (reverse SQA)."""
    b, hkv, n, m, d, dv = wl.batch, wl.kv_heads, wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
    q, k, v = rng.standard_normal((b, hq, n, d)), rng.standard_normal((b, hkv, m, d)), rng.standard_normal((b, hkv, m, dv))
    heads = max(hq, hkv)
    q, k, v = (np.repeat(t, heads // t.shape[1], axis=1) for t in (q, k, v))
    keep = _mask(wl, causal)
    out = {"pairs": 0, "matmul": 0, "q_read": hq * n * d * b, "o_written": 0}
    for bi in range(b):
        for h in range(heads):
            s = np.where(keep, q[bi, h] @ k[bi, h].T, -np.inf)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            o = (p / p.sum(axis=1, keepdims=True)) @ v[bi, h]
            out["pairs"] += int(keep.sum())
            out["matmul"] += 2 * int(keep.sum()) * (d + dv)  # kept scores only, as a fused kernel
            out["o_written"] += o.size
    return out


@settings(max_examples=150)
@given(sqa_case(), st.integers(0, 2**32 - 1))
def test_sqa_counts_equal_the_naive_algorithm(case, seed):
    wl, p = case
    c = count(wl, p)
    ref = naive_sqa_forward(wl, p.query_heads, p.causal, np.random.default_rng(seed))
    assert c.attended_pairs == ref["pairs"]
    fwd_flops = c.flops.by_op["qk"] + c.flops.by_op["pv"] if wl.phase != "bwd" else None
    if fwd_flops is not None:
        assert fwd_flops == ref["matmul"]
    if wl.phase in ("fwd", "decode"):
        heads = max(p.query_heads, wl.kv_heads)  # reverse SQA reads its repeated queries
        e, eo = wl.element_bytes, wl.output_bytes
        q = ref["q_read"] * heads // p.query_heads * e
        assert c.bytes.compulsory == q + e * wl.batch * wl.kv_heads * wl.kv_len * (wl.qk_head_dim + wl.v_head_dim) \
            + eo * ref["o_written"]
    assert c.workload.q_heads == max(p.query_heads, wl.kv_heads)


@settings(max_examples=150)
@given(sqa_case())
def test_sqa_closed_forms_equal_exact_counts(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, wl.phase)


def test_xsqa_prices_the_paper_configuration_against_its_gqa_baseline():
    # paper Tab. 3: xSQA Hq 4, Hkv 4 vs GQA 16/4, hidden 256 -> head dim 16, 200k tokens
    wl = Workload.sequence(200_000, heads=16, kv_heads=4, head_dim=16)
    r = predict(wl, SQA(4), "A100-SXM4-80GB")
    assert r.dense.counts.workload.q_heads == 16 and r.pattern.counts.workload.q_heads == 4
    assert r.speedup_vs_dense["flop"] == pytest.approx(16 / 4)  # H / Hq (Eq. 9)
    assert r.to_dict()["pattern_workload"]["q_heads"] == 4


@pytest.mark.parametrize("hq,heads,hkv,match", [
    (0, 16, 4, "--query-heads must be positive"),
    (20, 16, 4, "--query-heads 20 exceeds --heads 16"),
    (6, 12, 4, "--query-heads 6 and --kv-heads 4: one must divide the other"),
])
def test_bad_sqa_parameters_name_the_flag(hq, heads, hkv, match):
    with pytest.raises(PatternError, match=match):
        count(Workload.sequence(64, heads=heads, kv_heads=hkv), SQA(hq))


def test_sqa_flags():
    with pytest.raises(PatternError, match="--pattern sqa needs --query-heads"):
        build_pattern({"pattern": "sqa"})
    with pytest.raises(PatternError, match="--causal for sqa is on or off"):
        build_pattern({"pattern": "sqa", "query_heads": 4, "causal": "1x0"})
    assert build_pattern({"pattern": "sqa", "query_heads": 4, "causal": "all"}) == SQA(4, causal=True)
    with pytest.raises(PatternError, match="--active-heads does not apply to --pattern sqa"):
        build_pattern({"pattern": "sqa", "query_heads": 4, "active_heads": 2})


# -- MoH ---------------------------------------------------------------------------------------
@st.composite
def moh_case(draw, phases=("fwd", "decode")):
    hkv = draw(st.sampled_from([1, 2, 4]))
    heads = hkv * draw(st.sampled_from([1, 2, 3]))
    shared = draw(st.integers(0, heads - 1))
    active = draw(st.integers(1, heads - shared))
    phase = draw(st.sampled_from(phases))
    n = draw(st.integers(1, 24))
    kv = n + draw(st.integers(0, 16))
    common = dict(batch=draw(st.integers(1, 3)), heads=heads, kv_heads=hkv,
                  head_dim=draw(st.sampled_from([4, 8])), v_head_dim=draw(st.sampled_from([4, 16])),
                  dtype=draw(st.sampled_from(["bf16", "fp32"])))
    if phase == "decode":
        wl = Workload.sequence(kv, phase="decode", decode_tokens=draw(st.sampled_from([1, n])), **common)
    else:
        wl = Workload.sequence(n, kv_len=kv if draw(st.booleans()) else n, **common)
    return wl, MoH(active, shared, causal=draw(st.booleans()))


def naive_moh_routing(wl: Workload, p: MoH, rng) -> dict:
    """Paper Eq. 5 on random hidden states and router weights, counting its own FLOPs:
    per token, the shared heads plus the top-K of softmax(W_r x) over the routed heads."""
    b, h, n, d, s, k = wl.batch, wl.q_heads, wl.q_len, wl.qk_head_dim, p.shared_heads, p.active_heads
    d_model = h * d
    x = rng.standard_normal((b, n, d_model))
    weights = {"w_r": rng.standard_normal((d_model, h - s))}
    if s:
        weights.update(w_s=rng.standard_normal((d_model, s)), w_h=rng.standard_normal((d_model, 2)))
    flops, exps, active = 0, 0, np.zeros((b, n, h), dtype=bool)
    for w in weights.values():
        logits = x @ w
        flops += 2 * x.shape[0] * x.shape[1] * d_model * w.shape[1]
        exps += logits.size
    routed = x @ weights["w_r"]
    gates = np.exp(routed - routed.max(-1, keepdims=True))
    top = np.argsort(-gates, axis=-1)[..., :k]
    active[..., :s] = True
    np.put_along_axis(active[..., s:], top, True, axis=-1)
    # selection: one compare per routed candidate; then one alpha multiply per active gate
    top_k = routed.size + int(active.sum())
    return {"active": active, "router_flops": flops, "router_exps": exps, "top_k": top_k}


@settings(max_examples=150)
@given(moh_case(), st.integers(0, 2**32 - 1))
def test_moh_counts_equal_random_routing(case, seed):
    wl, p = case
    route = naive_moh_routing(wl, p, np.random.default_rng(seed))
    active = route["active"]
    assert (active.sum(-1) == p.active_heads + p.shared_heads).all()
    # per-head query sets, materialised: head h keeps row i iff token i routed to h
    keep = _mask(wl, p.causal)
    per_head = [[keep & active[bi, :, h][:, None] for h in range(wl.q_heads)] for bi in range(wl.batch)]
    pairs = sum(int(m.sum()) for row in per_head for m in row)
    c = count(wl, p)
    assert c.attended_pairs == pytest.approx(pairs, rel=1e-12)
    d, dv = wl.qk_head_dim, wl.v_head_dim
    assert c.flops.by_op["router"] == route["router_flops"]
    top_k = next(op for op in ops_of(p.op_graph(wl, c.pairs_per_head)) if op.name == "top_k")
    assert top_k.other_flops == route["top_k"]
    assert c.flops.by_op["qk"] == 2 * pairs * d and c.flops.by_op["pv"] == 2 * pairs * dv
    assert c.flops.exp == route["router_exps"] + pairs
    # K/V heads some query reads: exact for one MHA token, all heads charged otherwise
    group = wl.q_heads // wl.kv_heads
    used = [len({h // group for h in range(wl.q_heads) if active[bi, :, h].any()}) for bi in range(wl.batch)]
    kv_heads = p.kv_heads_read(wl)
    assert max(used) <= kv_heads and (wl.q_len > 1 or group > 1 or min(used) == kv_heads)
    assert c.bytes.by_tensor["k"] == wl.batch * kv_heads * wl.kv_len * d * wl.element_bytes
    active_rows = int(active.sum())
    assert c.bytes.by_tensor["q"] == active_rows * d * wl.element_bytes
    assert c.bytes.by_tensor["o"] == active_rows * dv * wl.output_bytes


@settings(max_examples=150)
@given(moh_case())
def test_moh_closed_forms_equal_exact_counts(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, wl.phase)


def test_moh_op_graph_is_router_top_k_attention():
    wl = Workload.sequence(1024, heads=32, kv_heads=8, head_dim=128)  # MoH-LLaMA3-8B: 16 shared + 8 routed
    c = count(wl, MoH(8, 16, causal=True))
    assert c.kernels == ("router", "attention")
    assert [op.name for op in ops_of(MoH(8, 16, causal=True).op_graph(wl, c.pairs_per_head))] == \
        ["router", "top_k", "qk", "pv"]
    assert c.pairs_per_head * 4 == 3 * 1024 * 1025 // 2  # 24 of 32 heads on average
    assert isinstance(count(wl.with_(q_len=3, kv_len=3), MoH(1, 0)).pairs_per_head, float)  # 9 / 32


@pytest.mark.parametrize("kwargs,wl_kw,match", [
    (dict(active_heads=0), {}, "--active-heads must be positive"),
    (dict(active_heads=1, shared_heads=-1), {}, "--shared-heads must be >= 0"),
    (dict(active_heads=5, shared_heads=4), {}, "--active-heads 5 exceeds the 4 routed heads"),
    (dict(active_heads=2), dict(phase="bwd"), "--pattern moh models --phase fwd and decode"),
])
def test_bad_moh_parameters_name_the_flag(kwargs, wl_kw, match):
    with pytest.raises(PatternError, match=match):
        count(Workload.sequence(64, heads=8, **wl_kw), MoH(**kwargs))


def test_moh_flags_layout_and_formula_refusals():
    with pytest.raises(PatternError, match="--pattern moh needs --active-heads"):
        build_pattern({"pattern": "moh", "shared_heads": 2})
    assert build_pattern({"pattern": "moh", "active_heads": 2}) == MoH(2, 0)
    with pytest.raises(PatternError, match="data-dependent"):
        MoH(1).layout(Workload.sequence(8))
    with pytest.raises(PatternError, match="--pattern moh models --phase fwd and decode only"):
        formula(MoH(1), "bwd")


def test_formula_and_predict_cli(capsys):
    from attnsim.cli import main

    for name in ("sqa", "moh"):
        assert main(["formula", name, "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert {"pairs_per_head", "matmul_flops", "exp", "compulsory_bytes"} <= set(d["formulas"])
    assert main(["predict", "--pattern", "sqa", "--query-heads", "4", "--heads", "16", "--kv-heads", "4",
                 "--seq", "4096", "--causal", "--baseline", "causal", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["speedup_vs_dense"]["flop"] == pytest.approx(4.0)
    assert main(["predict", "--pattern", "moh", "--active-heads", "4", "--shared-heads", "4", "--heads", "16",
                 "--seq", "4096", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["attended_pairs"] == 8 * 4096 * 4096
