"""Routing Transformer: counts equal a naive numpy run of the reference routing
(google-research routing_transformer/utils.py: nearest_neighbor scores, top_k per centroid,
sorted indices, w x w blocks with a lower-triangular mask) on random data."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.patterns import Routing
from attnsim.spec import build_pattern

from .forms import assert_closed_form_equals_count


def naive(n: int, clusters: int, d: int, dv: int, causal: bool, shared: bool, rng) -> dict:
    """One head: route q (and k) to centroids, attend within clusters; count what it computes."""
    q = rng.standard_normal((n, d))
    k = q if shared else rng.standard_normal((n, d))
    v, means = rng.standard_normal((n, dv)), rng.standard_normal((clusters, d))
    w, flops, pairs, counted = n // clusters, {"routing": 0, "attention": 0}, 0, np.zeros(n)

    def route(x):
        flops["routing"] += 2 * x.shape[0] * clusters * d
        dist = -(x @ means.T)                          # [n, clusters]
        return np.sort(np.argsort(dist, axis=0, kind="stable")[:w].T, axis=-1)  # top-w per centroid, sorted

    q_idx = route(q)
    k_idx = q_idx if shared else route(k)
    out = np.zeros((n, dv))
    for c in range(clusters):
        keep = np.tril(np.ones((w, w), dtype=bool)) if causal else np.ones((w, w), dtype=bool)
        if causal and shared:  # slot order is sequence order: the slot mask is the causal mask
            assert (keep == (q_idx[c][:, None] >= k_idx[c][None, :])).all()
        logits = np.where(keep, q[q_idx[c]] @ k[k_idx[c]].T, -np.inf)
        pairs += int(keep.sum())
        flops["attention"] += int(keep.sum()) * 2 * (d + dv)
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[q_idx[c]] += prob / prob.sum(axis=1, keepdims=True) @ v[k_idx[c]]
        counted[q_idx[c]] += 1
    assert counted.sum() == n  # balanced: clusters x w slots
    return {"pairs": pairs, "flops": flops}


@st.composite
def routing_case(draw):
    clusters, w = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    wl = Workload.sequence(clusters * w, heads=draw(st.integers(1, 3)), batch=draw(st.integers(1, 2)),
                           head_dim=draw(st.sampled_from([4, 8])), v_head_dim=draw(st.sampled_from([4, 6])))
    causal = draw(st.booleans())
    return wl, Routing(clusters, causal, shared_qk=draw(st.sampled_from([None, True, False])))


@settings(max_examples=80)
@given(routing_case(), st.integers(0, 2**32 - 1))
def test_counts_equal_the_reference_routing(case, seed):
    wl, p = case
    ref = naive(wl.q_len, p.clusters, wl.qk_head_dim, wl.v_head_dim, p.causal, p.shared, np.random.default_rng(seed))
    c = count(wl, p)
    heads = wl.batch * wl.q_heads
    assert c.pairs_per_head == ref["pairs"]
    assert c.flops.exp == heads * ref["pairs"]
    routing = sum(v for k, v in c.flops.by_op.items() if k.startswith("score_"))
    assert routing == heads * ref["flops"]["routing"]
    assert c.flops.matmul == heads * (ref["flops"]["routing"] + ref["flops"]["attention"])


@settings(max_examples=60)
@given(routing_case())
def test_closed_forms_equal_exact_counts(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, "fwd")


@pytest.mark.parametrize("n", [1024, 4096, 65536])
def test_sqrt_n_clusters_cost_n_to_the_1_5_d(n):
    # clusters = w = sqrt(N): attention N w (D + Dv) x 2 = 4 N^1.5 D, routing 2 N sqrt(N) D per tensor
    d, r = 64, math.isqrt(n)
    c = count(Workload.sequence(n, head_dim=d), Routing(r))
    assert c.pairs_per_head == r ** 3
    assert c.flops.matmul == 4 * r ** 3 * d + 2 * (2 * r ** 3 * d)  # queries and keys routed apart


def test_training_adds_centroid_updates_and_the_flash_attention_2_backward():
    wl = Workload.sequence(4096, heads=2, head_dim=64)
    p = Routing(64, causal=True)  # shared QK: one routed tensor
    fwd, bwd, both = (count(wl.with_(phase=ph), p) for ph in ("fwd", "bwd", "fwd+bwd"))
    attention = fwd.flops.by_op["qk"] + fwd.flops.by_op["pv"]
    assert bwd.flops.matmul == 2.5 * attention
    one_hot = 2 * 2 * 4096 * 64 * 64  # EMA sums and commitment lookup: (items x clusters) x D each
    assert both.flops.matmul == fwd.flops.matmul + 2 * one_hot + bwd.flops.matmul


def test_flags_build_the_pattern_with_shared_qk_when_causal():
    p = build_pattern({"pattern": "routing", "clusters": 16, "causal": "all"})
    assert p == Routing(16, causal=True) and p.shared


@pytest.mark.parametrize("p,wl,match", [
    (Routing(100), Workload.sequence(4096), "--clusters 100 must divide"),
    (Routing(0), Workload.sequence(4096), "--clusters must be positive"),
    (Routing(64), Workload.sequence(4096, phase="decode"), "--phase decode"),
    (Routing(64), Workload.sequence(4096, heads=8, kv_heads=2), "--kv-heads"),
])
def test_bad_parameters_name_the_flag(p, wl, match):
    with pytest.raises(PatternError, match=match):
        count(wl, p)


def test_missing_clusters_is_refused():
    with pytest.raises(PatternError, match="needs --clusters"):
        build_pattern({"pattern": "routing"})
