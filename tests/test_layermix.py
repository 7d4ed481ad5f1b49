"""Layer hybrids: a whole stack of masks (full, selecting, and sparse layers reusing the last
selection) built from random scores sums to the exact stack counts; the per-layer average the
op graph prices is that total over the layers; the closed form equals the count."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.cli import main
from attnsim.errors import PatternError
from attnsim.patterns import Causal, LayerMix
from attnsim.patterns.opgraph import ops_of

from .forms import assert_closed_form_equals_count


def stack_reference(wl, p, rng):
    """Masks layer by layer: (pairs, compares) per head over the stack, and the kinds in order."""
    nq, nkv = wl.q_len, wl.kv_len
    visible = np.ones((nq, nkv), bool)
    if p.causal:
        visible = np.arange(nkv)[None, :] <= (np.arange(nq) + nkv - nq)[:, None]
    sparse, sel = p.layers - p.full_layers, p.selection_layers
    kinds = ["full"] * (p.full_layers - sel)
    for i in range(sel):  # each selection layer, then its share of the sparse layers
        kinds += ["select"] + ["sparse"] * (sparse // sel + (i < sparse % sel))
    kinds += ["sparse"] * (sparse if not sel else 0)
    pairs = compares = 0
    chosen = None
    for kind in kinds:
        if kind in ("full", "select"):
            pairs += visible.sum()
        if kind == "select" or (kind == "sparse" and chosen is None):
            scores = np.where(visible, rng.standard_normal((nq, nkv)), -np.inf)
            chosen = np.zeros_like(visible)
            for i, row in enumerate(scores):
                top = np.argsort(row)[::-1][:p.top_k]
                chosen[i, top[np.isfinite(row[top])]] = True
            compares += visible.sum() if kind == "select" else 0
        if kind == "sparse":
            pairs += chosen.sum()  # reused by every sparse layer until the next selection layer
    return pairs, compares, kinds


@st.composite
def stack_case(draw):
    layers = draw(st.integers(1, 12))
    full = draw(st.integers(0, layers))
    sel = draw(st.integers(0, min(full, layers - full)))
    nq = draw(st.integers(1, 30))
    nkv = nq + draw(st.integers(0, 20))
    decode = draw(st.booleans())
    kv = draw(st.sampled_from([1, 2]))
    common = dict(heads=kv * draw(st.integers(1, 2)), kv_heads=kv, head_dim=16, v_head_dim=8)
    wl = (Workload.sequence(nkv, phase="decode", decode_tokens=nq, **common) if decode
          else Workload.sequence(nq, kv_len=nkv, **common))
    return wl, LayerMix(layers, full, draw(st.integers(1, nkv)), sel, causal=draw(st.booleans()))


@settings(max_examples=200)
@given(stack_case(), st.integers(0, 2**32 - 1))
def test_stack_counts_equal_masks_built_layer_by_layer(case, seed):
    wl, p = case
    pairs, compares, kinds = stack_reference(wl, p, np.random.default_rng(seed))
    assert [kind for kind, _ in p.plan()] == kinds
    totals = p.stack_sums(wl)
    assert totals["pairs"] == pairs and totals["compares"] == compares
    # the graph prices the average layer: every total divided by the number of layers
    c = count(wl, p)
    heads = wl.heads_total
    assert c.pairs_per_head == pytest.approx(pairs / p.layers, rel=1e-12)
    assert c.flops.matmul == pytest.approx(2 * heads * pairs * (16 + 8) / p.layers, rel=1e-12)
    assert c.flops.exp == pytest.approx(heads * pairs / p.layers, rel=1e-12)
    selects = [o for o in ops_of(p.op_graph(wl, c.pairs_per_head)) if o.name.endswith("top_k")]
    assert sum(o.other_flops for o in selects) * p.layers == pytest.approx(heads * compares, rel=1e-12)


def test_sparse_layers_read_the_ids_of_their_selection_layer():
    p = LayerMix(layers=7, full_layers=3, top_k=4, selection_layers=2)
    assert p.plan() == [("full", None), ("select", None), ("sparse", 1), ("sparse", 1), ("select", None),
                        ("sparse", 4), ("sparse", 4)]
    graph = p.op_graph(Workload.sequence(64), None)
    assert graph.has_edge("l1.top_k", "l3.qk") and graph.has_edge("l4.top_k", "l6.qk")


def test_delta_decode_stack_by_hand():
    # DELTA speed run: DeepSeek-R1-Distill-Qwen-1.5B (28 layers, 12 q / 2 kv heads of 128), full
    # cache layers 0 1 2 14 22 (2, 14, 22 plan the subsets), 64 pages of 16 tokens elsewhere
    p = LayerMix(layers=28, full_layers=5, top_k=64 * 16, selection_layers=3, causal=True)
    wl = Workload.sequence(18432, phase="decode", heads=12, kv_heads=2, batch=64)
    c = count(wl, p)
    assert c.pairs_per_head == pytest.approx((5 * 18432 + 23 * 1024) / 28)
    r = predict(wl, p, "A100-SXM4-80GB", baseline=Causal())
    assert r.speedup_vs_dense["flop"] == pytest.approx(28 * 18432 / (5 * 18432 + 23 * 1024))


def test_closed_form_equals_the_count():
    rng = np.random.default_rng(7)
    for _ in range(200):
        layers = int(rng.integers(1, 40))
        full = int(rng.integers(0, layers + 1))
        sel = int(rng.integers(0, min(full, layers - full) + 1))
        nq = int(rng.integers(1, 300))
        nkv = nq + int(rng.integers(0, 300))
        wl = Workload.sequence(nq, kv_len=nkv, batch=int(rng.integers(1, 3)), heads=4, kv_heads=2, dtype="fp8")
        p = LayerMix(layers, full, int(rng.integers(1, nkv + 1)), sel, causal=bool(rng.integers(2)))
        assert_closed_form_equals_count(wl, p, "fwd")


@pytest.mark.parametrize("kwargs,match", [
    (dict(layers=0, full_layers=0, top_k=8), "--layers must be at least 1"),
    (dict(layers=4, full_layers=5, top_k=8), "--full-layers 5 must be between 0 and --layers 4"),
    (dict(layers=4, full_layers=3, top_k=8, selection_layers=2), "--selection-layers 2"),
    (dict(layers=4, full_layers=1, top_k=8, selection_layers=2), "--selection-layers 2"),
    (dict(layers=4, full_layers=1, top_k=100), "--top-k 100 must be between 1 and the 64 keys"),
])
def test_bad_parameters_name_the_flag(kwargs, match):
    with pytest.raises(PatternError, match=match):
        count(Workload.sequence(64), LayerMix(**kwargs))


def test_training_is_refused():
    with pytest.raises(PatternError, match="inference"):
        count(Workload.sequence(64, phase="bwd"), LayerMix(4, 1, 8))


def test_cli(capsys):
    assert main(["predict", "--pattern", "layer-mix", "--layers", "32", "--full-layers", "18", "--top-k", "2176",
                 "--causal", "--seq", "32768", "--json"]) == 0
    capsys.readouterr()
    assert main(["predict", "--pattern", "layer-mix", "--layers", "32", "--seq", "4096"]) == 2
    assert "needs --full-layers" in capsys.readouterr().err
