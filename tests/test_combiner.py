"""Combiner: counts equal a naive numpy run of the reference code (google-research combiner/:
JAX _SelfAttSqrtn / TF sqrt_fixed_full for fixed, _SelfAttAxialRowmajor / axial_rowmajor for
axial) that counts its own kept logits and matmul FLOPs."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import Combiner
from attnsim.spec import build_pattern

from .forms import assert_closed_form_equals_count


def naive(mode: str, causal: bool, n: int, b: int, d: int, dv: int, rng) -> dict:
    """One head: the algorithm on random q, k, v; returns kept logits and matmul FLOPs."""
    q, k, v = rng.standard_normal((n, d)), rng.standard_normal((n, d)), rng.standard_normal((n, dv))
    s, flops, logits = n // b, {"summary": 0, "main": 0, "proj": 0}, {"summary": 0, "main": 0}
    seg = lambda x, r: x[r * b:(r + 1) * b]  # noqa: E731

    def attend(part, query, keys, values):
        logits[part] += len(keys)
        flops[part] += 2 * len(keys) * d + 2 * len(keys) * dv
        w = np.exp(keys @ query - (keys @ query).max())
        return w @ values / w.sum()

    if mode == "fixed":  # summary r: key = max-pooled keys, value = max-pooled query over segment r
        sum_k = [seg(k, r).max(axis=0) for r in range(s)]
        sum_v = [attend("summary", seg(q, r).max(axis=0), seg(k, r), seg(v, r)) for r in range(s)]
    else:  # summary (r, c): query (r, c) attends its whole row; key = Dense + LN + Dense of that output
        width = d  # one head: model width = head dim
        row_out = np.array([attend("summary", q[i], seg(k, i // b), seg(v, i // b)) for i in range(n)])
        flops["proj"] = 2 * n * dv * width + 2 * n * width * d
        k_row = row_out @ rng.standard_normal((dv, width)) @ rng.standard_normal((width, d))
    for i in range(n):
        r, c = divmod(i, b)
        direct = [j for j in range(r * b, (r + 1) * b) if not causal or j <= i]
        rows = [x for x in range(s) if not causal or x < r]
        if mode == "fixed":
            keys = [k[j] for j in direct] + [sum_k[x] for x in rows]
            values = [v[j] for j in direct] + [sum_v[x] for x in rows]
        else:
            keys = [k[j] for j in direct] + [k_row[x * b + c] for x in rows]
            values = [v[j] for j in direct] + [row_out[x * b + c] for x in rows]
        attend("main", q[i], np.array(keys), np.array(values))
    return {"logits": logits, "flops": flops}


@st.composite
def combiner_case(draw):
    b, s = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kv = draw(st.sampled_from([1, 2]))
    wl = Workload.sequence(b * s, heads=kv * draw(st.integers(1, 2)), kv_heads=kv, batch=draw(st.integers(1, 2)),
                           head_dim=draw(st.sampled_from([4, 8])), v_head_dim=draw(st.sampled_from([4, 6])))
    return wl, Combiner(b, draw(st.sampled_from(["fixed", "axial"])), draw(st.booleans()))


@settings(max_examples=60)
@given(combiner_case(), st.integers(0, 2**32 - 1))
def test_counts_equal_the_reference_algorithm(case, seed):
    wl, p = case
    ref = naive(p.mode, p.causal, wl.q_len, p.block_size, wl.qk_head_dim, wl.v_head_dim, np.random.default_rng(seed))
    c = count(wl, p)
    assert c.pairs_per_head == ref["logits"]["main"]
    assert p.summarise_pairs(wl) == ref["logits"]["summary"]
    heads = wl.batch * wl.q_heads
    proj = 0 if p.mode == "fixed" else ref["flops"]["proj"] * wl.batch * wl.q_heads ** 2  # width H D
    assert c.flops.matmul == heads * (ref["flops"]["main"] + ref["flops"]["summary"]) + proj
    assert c.flops.exp == heads * (ref["logits"]["main"] + ref["logits"]["summary"])


@settings(max_examples=60)
@given(combiner_case())
def test_closed_forms_equal_exact_counts(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, "fwd")


@pytest.mark.parametrize("n", [64, 1024, 4096, 16384])
def test_sqrt_segments_give_n_to_the_1_5(n):
    # causal: S b(b+1)/2 + b S(S-1)/2 with S = b = sqrt(N) is b^2 (b + 1 + b - 1) / 2 = b^3 = N^1.5
    b = math.isqrt(n)
    for mode in ("fixed", "axial"):
        assert count(Workload.sequence(n), Combiner(b, mode, causal=True)).pairs_per_head == b ** 3
        assert count(Workload.sequence(n), Combiner(b, mode)).pairs_per_head == 2 * b ** 3  # N b + N S


@pytest.mark.parametrize("mode", ["fixed", "axial"])
def test_backward_is_flash_attention_2_on_both_attentions(mode):
    wl = Workload.sequence(1024, heads=4, head_dim=64)
    p = Combiner(32, mode, causal=True)
    fwd, bwd, both = (count(wl.with_(phase=ph), p) for ph in ("fwd", "bwd", "fwd+bwd"))
    proj = fwd.flops.by_op.get("summary_proj", 0)
    # backward: 2.5x the attentions' forward matmuls (recompute S, dV, dP, dQ, dK) + 2x the projection
    assert bwd.flops.matmul == 2.5 * (fwd.flops.matmul - proj) + 2 * proj
    assert both.flops.matmul == fwd.flops.matmul + bwd.flops.matmul
    assert bwd.flops.exp == fwd.flops.exp


def test_flags_build_the_pattern():
    p = build_pattern({"pattern": "combiner", "block_size": "64", "combiner_mode": "axial", "causal": "all"})
    assert p == Combiner(64, "axial", causal=True)


@pytest.mark.parametrize("p,wl,match", [
    (Combiner(100), Workload.sequence(4096), "--block-size 100 must divide"),
    (Combiner(64, "logsparse"), Workload.sequence(4096), "--combiner-mode 'logsparse'"),
    (Combiner(64), Workload.sequence(4096, phase="decode"), "--phase decode"),
    (Combiner(64), Workload.sequence(4096, kv_len=8192), "without --kv-seq"),
])
def test_bad_parameters_name_the_flag(p, wl, match):
    with pytest.raises(PatternError, match=match):
        count(wl, p)
