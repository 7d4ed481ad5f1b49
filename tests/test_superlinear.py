"""Superlinear (N=2): counts equal the span-search rules of the superlinear package
(search/_reference.py get_search_mask + get_spans, span/masks.py, decode_span_attention_staged)
run with random search scores: exact whenever no selected span is clipped at token 0, an upper
bound attained by the nearest anchors otherwise."""
import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.formulas import evaluate, formula
from attnsim.patterns import Superlinear
from attnsim.spec import build_pattern


def reference(wl: Workload, k: int, sw_index: int, factor: float, rng, nearest: bool = False) -> dict:
    """Per query at position p: stripes i > sw_index with anchor p + 1 - i^2 >= 0, top-k by score,
    spans [max(anchor - ceil(f sqrt(p+1)), 0), anchor], window of (sw_index+1)^2 - 1 keys."""
    window, pairs, searched, clipped = (sw_index + 1) ** 2 - 1, 0, 0, False
    for p in range(wl.kv_len - wl.q_len, wl.kv_len):
        stripes = np.arange(sw_index + 1, math.isqrt(p + 1) + 2)
        anchors = p + 1 - stripes ** 2
        anchors = anchors[anchors >= 0]
        searched += len(anchors)
        scores = anchors.astype(float) if nearest else rng.standard_normal(len(anchors))
        chosen = anchors[np.argsort(-scores, kind="stable")[:k]]
        length = math.ceil(factor * math.sqrt(p + 1))
        starts = np.maximum(chosen - length, 0)
        clipped |= bool((chosen - length < 0).any())
        span_keys = int((chosen - starts + 1).sum())
        sw = len(range(max(p - window + 1, 0), p + 1))
        if wl.phase == "decode":  # k slots each re-attend the window; no anchor: dense over p + 1 keys
            pairs += k * sw + span_keys if len(anchors) else p + 1
        else:
            pairs += sw + span_keys
    return {"pairs": pairs, "searched": searched, "clipped": clipped}


@st.composite
def superlinear_case(draw):
    decode = draw(st.booleans())
    kv = draw(st.integers(1, 400))
    wl = (Workload.sequence(kv, phase="decode", decode_tokens=draw(st.integers(1, min(4, kv))), heads=2)
          if decode else Workload.sequence(kv, heads=2))
    s = draw(st.integers(0, 4))
    return wl, Superlinear(draw(st.integers(1, 4)), (s + 1) ** 2 - 1, draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])))


@settings(max_examples=150)
@given(superlinear_case(), st.integers(0, 2**32 - 1))
def test_counts_equal_random_routing_unless_a_span_is_clipped(case, seed):
    wl, p = case
    c = count(wl, p)
    ref = reference(wl, p.top_k, p.sw_index, p.span_factor, np.random.default_rng(seed))
    assert p.search_scores_per_head(wl) == ref["searched"]
    assert c.pairs_per_head == ref["pairs"] if not ref["clipped"] else c.pairs_per_head >= ref["pairs"]
    # the bound is attained: the nearest anchors win
    assert c.pairs_per_head == reference(wl, p.top_k, p.sw_index, p.span_factor, None, nearest=True)["pairs"]


@settings(max_examples=60)
@given(superlinear_case())
def test_ops_count_search_attention_and_gating(case):
    wl, p = case
    c, heads = count(wl, p), wl.batch * wl.q_heads
    d, dv = wl.qk_head_dim, wl.v_head_dim
    slots = wl.q_len * p.top_k if wl.phase == "fwd" else sum(
        p.top_k for t in range(wl.kv_len - wl.q_len + 1, wl.kv_len + 1) if math.isqrt(t) > p.sw_index)
    assert c.flops.matmul == heads * (2 * p.search_scores_per_head(wl) * d + 2 * c.pairs_per_head * (d + dv)
                                      + 2 * slots * dv)
    assert c.flops.exp == heads * (c.pairs_per_head + slots)


@functools.lru_cache(maxsize=None)
def prefill_form():
    return formula(Superlinear(), "fwd")  # the form has symbols for k, W, s, f: one build serves all


@settings(max_examples=10)  # each evaluation lambdifies sympy Sums: ~1 s
@given(st.integers(1, 300), st.integers(1, 4), st.integers(0, 4), st.sampled_from([0.5, 2.0, 3.0]))
def test_closed_forms_equal_exact_counts(n, k, s, f):
    wl, p = Workload.sequence(n, heads=2, kv_heads=1), Superlinear(k, (s + 1) ** 2 - 1, f)
    got, exact = evaluate(prefill_form(), wl, p), count(wl, p)
    assert got["pairs_per_head"] == exact.pairs_per_head
    assert got["search_scores_per_head"] == p.search_scores_per_head(wl)
    assert got["matmul_flops"] == pytest.approx(exact.flops.matmul, rel=1e-12)
    assert got["exp"] == pytest.approx(exact.flops.exp, rel=1e-12)
    assert got["compulsory_bytes"] == pytest.approx(exact.bytes.compulsory, rel=1e-12)


def test_one_query_by_hand():
    # t = 16, window 3 (sw_index 1), top-2, f = 2: stripes i = 2, 3, 4 -> anchors 12, 7, 0; L = 8.
    # nearest two: [4, 12] (9 keys) and [0, 7] (8 keys, clipped at 0); window 3 keys.
    p = Superlinear(2, 3, 2.0)
    q = p.per_query(Workload.sequence(16, phase="decode"))
    assert (q["candidates"][0], q["span_keys"][0], q["window"][0]) == (3, 17, 3)
    assert count(Workload.sequence(16, phase="decode"), p).pairs_per_head == 2 * 3 + 17  # decode: window per slot


def test_search_and_spans_grow_as_l_to_the_1_5():
    # sum over t of ~2 sqrt(t) search candidates x ... : quadrupling L multiplies both by ~8
    small, big = (count(Workload.sequence(n), Superlinear(2, 15)) for n in (1 << 16, 1 << 18))
    ratio = big.pairs_per_head / small.pairs_per_head
    assert 7.5 < ratio < 8.1
    p = Superlinear(2, 15)
    assert 7.5 < p.search_scores_per_head(Workload.sequence(1 << 18)) / p.search_scores_per_head(
        Workload.sequence(1 << 16)) < 8.1


def test_flags_build_the_pattern():
    p = build_pattern({"pattern": "superlinear", "top_k": 3, "window": "15", "span_factor": 3.0})
    assert p == Superlinear(3, 15, 3.0) and p.sw_index == 3


@pytest.mark.parametrize("p,wl,match", [
    (Superlinear(3, 10), Workload.sequence(4096), "--window 10"),
    (Superlinear(0, 15), Workload.sequence(4096), "--top-k must be positive"),
    (Superlinear(3, 15, 0.0), Workload.sequence(4096), "--span-factor"),
    (Superlinear(3, 15), Workload.sequence(4096, phase="fwd+bwd"), "--phase fwd\\+bwd"),
    (Superlinear(3, 15), Workload.sequence(4096, kv_len=8192), "--kv-seq"),
])
def test_bad_parameters_name_the_flag(p, wl, match):
    with pytest.raises(PatternError, match=match):
        count(wl, p)
