"""The naive multi-op runners: outputs equal independent references, MoBA's selection has
attnsim's pair count and is the routing rule, the work model counts the FLOPs, exponentials and
torch ops they execute, refusals say why, and a config runs through `validate run`'s pipeline."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from attnsim import Workload  # noqa: E402
from attnsim.hwmodels import load_profile  # noqa: E402
from attnsim.hwmodels.kernelcost import features  # noqa: E402
from attnsim.patterns import Agent, Dense, Linear, LowRank, MoBA  # noqa: E402
from attnsim.validate.naive_runners import (NaiveAgent, NaiveLinear, NaiveLowRank, NaiveMoBA,  # noqa: E402
                                            formula_reference, linear_feature_scales, linformer_projections)
from attnsim.validate.run import Outcome, run_config  # noqa: E402
from attnsim.validate.runners import all_runners, build_checked, make_inputs, reference  # noqa: E402
from attnsim.validate.store import Store  # noqa: E402
from attnsim.validate.suites import suite  # noqa: E402

from ..test_agent import agent_forward  # noqa: E402
from ..test_linear import linear_output  # noqa: E402
from ..test_lowrank import softmax  # noqa: E402

HW = load_profile("EPYC-2vCPU")


def checked(runner, wl, pattern, seed=0):
    """Build, run once and compare with the reference as `validate run` does (MoBA: under the
    runner's own selection, whose pairs per head must be attnsim's); returns max |error|."""
    ok, why = runner.supports(wl, pattern, "cpu")
    assert ok, why
    x = make_inputs(wl, "cpu", seed)
    chosen = runner.selection(wl, pattern, x)
    if chosen is not None:
        per_head = chosen.reshape(-1, wl.q_len * wl.kv_len).sum(axis=1)
        assert (per_head == pattern.pairs_per_head(wl)).all()
    expected = reference(wl, pattern, x, chosen)
    return build_checked(runner, wl, pattern, x, expected)[2]


# -- the references are the formulas (numpy, float64, from the pattern tests) ---------------------
def test_formula_references_equal_float64_numpy():
    wl = Workload.sequence(24, kv_len=24, batch=2, heads=2, head_dim=8, v_head_dim=4, dtype="fp32")
    x = make_inputs(wl, "cpu")
    q, k, v = (t.double().numpy() for t in (x.q, x.k, x.v))
    sq, sk = linear_feature_scales(wl)
    e, f = (t.double().numpy() for t in linformer_projections(wl, 5))
    s = 8 ** -0.25  # split the softmax scale over both score operands of agent_forward
    for b in range(2):
        for h in range(2):
            qq, kk, vv = q[b, h], k[b, h], v[b, h]
            for causal in (True, False):
                got = formula_reference(wl, Linear(chunk=4, causal=causal), x)[b, h].numpy()
                np.testing.assert_allclose(got, linear_output(qq * sq, kk * sk, vv, causal), atol=1e-5)
            lowrank = softmax(qq @ (e @ kk).T / math.sqrt(8)) @ (f @ vv)
            np.testing.assert_allclose(formula_reference(wl, LowRank(5), x)[b, h].numpy(), lowrank, atol=1e-5)
            agent = agent_forward(qq * s, kk * s, vv, 6)[0]
            np.testing.assert_allclose(formula_reference(wl, Agent(6), x)[b, h].numpy(), agent, atol=1e-5)
    assert formula_reference(wl, Dense(), x) is None  # masks: masked softmax attention instead
    assert torch.equal(reference(wl, Agent(6), x), formula_reference(wl, Agent(6), x))  # the hook


# -- every runner equals its reference ---------------------------------------------------------
SHAPE = dict(batch=st.integers(1, 2), heads=st.integers(1, 3), d=st.sampled_from([4, 16, 32]),
             dv=st.sampled_from([4, 16]))


@settings(max_examples=25, deadline=None)
@given(chunks=st.integers(1, 6), chunk=st.sampled_from([1, 4, 16]), causal=st.booleans(),
       phase=st.sampled_from(["fwd", "decode"]), **SHAPE)
def test_linear_runner_matches_the_quadratic_form(chunks, chunk, causal, phase, batch, heads, d, dv):
    wl = Workload.sequence(chunks * chunk, batch=batch, heads=heads, head_dim=d, v_head_dim=dv, dtype="fp32",
                           phase=phase)
    assert checked(NaiveLinear(), wl, Linear(chunk=chunk, causal=causal)) < 1e-5


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 80), data=st.data(), **SHAPE)
def test_lowrank_runner_matches_linformer(n, data, batch, heads, d, dv):
    m = data.draw(st.integers(1, 80))
    wl = Workload.sequence(n, kv_len=m, batch=batch, heads=heads, head_dim=d, v_head_dim=dv, dtype="fp32")
    assert checked(NaiveLowRank(), wl, LowRank(data.draw(st.integers(1, m)))) < 1e-5


@settings(max_examples=25, deadline=None)
@given(agents=st.integers(1, 8), window=st.integers(1, 10), m=st.integers(1, 80), **SHAPE)
def test_agent_runner_matches_two_softmax_attentions(agents, window, m, batch, heads, d, dv):
    wl = Workload.sequence(agents * window, kv_len=m, batch=batch, heads=heads, head_dim=d, v_head_dim=dv,
                           dtype="fp32")
    assert checked(NaiveAgent(), wl, Agent(agents)) < 1e-5


@st.composite
def moba_case(draw):
    bs, blocks, causal = draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.booleans())
    m = bs * blocks
    n = draw(st.sampled_from([m, draw(st.integers(1, m))])) if causal else m  # prefill or decode-like tail
    wl = Workload.sequence(n, kv_len=m, batch=draw(st.integers(1, 2)), heads=draw(st.integers(1, 3)),
                           head_dim=draw(st.sampled_from([4, 16])), dtype="fp32")
    return wl, MoBA(bs, draw(st.integers(1, blocks)), causal)


@settings(max_examples=40, deadline=None)
@given(moba_case(), st.integers(0, 2**16))
def test_moba_runner_matches_reference_under_its_selection(case, seed):
    wl, p = case
    assert checked(NaiveMoBA(), wl, p, seed) < 1e-5


@pytest.mark.parametrize("runner,pattern", [(NaiveLinear(), Linear(chunk=16)), (NaiveLowRank(), LowRank(16)),
                                            (NaiveAgent(), Agent(8)), (NaiveMoBA(), MoBA(16, 2, causal=True))],
                         ids=lambda v: getattr(v, "name", ""))
def test_bf16_inputs_within_the_bf16_tolerance(runner, pattern):
    checked(runner, Workload.sequence(128, heads=2, head_dim=32, dtype="bf16"), pattern)


def test_moba_selection_is_own_block_plus_the_best_gated_earlier_blocks():
    """Brute force in float64 numpy: gate = q . mean(K block); own block always; then the top_k - 1
    best candidates (causal: earlier blocks only)."""
    for causal in (True, False):
        wl, p = Workload.sequence(48, batch=1, heads=2, head_dim=8, dtype="fp32"), MoBA(6, 3, causal)
        x = make_inputs(wl, "cpu", 7)
        got = NaiveMoBA().selection(wl, p, x)
        for h in range(2):
            q, k = x.q[0, h].double().numpy(), x.k[0, h].double().numpy()
            pooled = k.reshape(8, 6, 8).mean(1)
            for i in range(48):
                own = i // 6
                cands = [b for b in range(own if causal else 8) if b != own]
                best = sorted(cands, key=lambda b: -(q[i] @ pooled[b]))[:2]
                keys = np.isin(np.arange(48) // 6, [own, *best]) & ((np.arange(48) <= i) | (not causal))
                assert (got[0, h, i] == keys).all()


# -- the work model counts what the runners execute -------------------------------------------
class CountOps(TorchDispatchMode):
    """Non-view aten ops and softmax'd elements (aten._unsafe_view is matmul's reshape of its bmm
    output: a view in all but name)."""

    def __init__(self):
        super().__init__()
        self.ops, self.exp = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func is not torch.ops.aten._unsafe_view.default:
            self.ops += 1
        if func is torch.ops.aten._softmax.default:
            self.exp += args[0].numel()
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("runner,wl,pattern", [
    (NaiveLinear(), Workload.sequence(64, heads=2, head_dim=16, v_head_dim=8, dtype="fp32"), Linear(chunk=16)),
    (NaiveLinear(), Workload.sequence(64, heads=2, head_dim=16, dtype="fp32"), Linear(causal=False)),
    (NaiveLinear(), Workload.sequence(64, heads=2, head_dim=16, dtype="fp32", phase="decode"), Linear()),
    (NaiveLowRank(), Workload.sequence(64, kv_len=48, heads=2, head_dim=16, dtype="fp32"), LowRank(8)),
    (NaiveAgent(), Workload.sequence(64, kv_len=48, heads=2, head_dim=16, dtype="fp32"), Agent(8)),
    (NaiveMoBA(), Workload.sequence(64, heads=2, head_dim=16, dtype="fp32"), MoBA(8, 3, causal=True)),
    (NaiveMoBA(), Workload.sequence(64, heads=2, head_dim=16, dtype="fp32"), MoBA(8, 3, causal=False)),
    (NaiveMoBA(), Workload.sequence(64, heads=2, head_dim=16, dtype="fp32", phase="decode", decode_tokens=5),
     MoBA(8, 3, causal=True)),
], ids=lambda v: getattr(v, "name", None) or str(getattr(v, "phase", "")) or v.describe())
def test_work_model_counts_the_executed_flops_exps_and_ops(runner, wl, pattern):
    """torch's own FLOP counter and a dispatch-level op count against opgraphcost's features (two
    threads on the profile: shared work terms are halves)."""
    run = runner.build(wl, pattern, make_inputs(wl, "cpu"))
    with FlopCounterMode(display=False) as flops:
        run()
    with CountOps() as ops:
        run()
    f = features(wl, pattern, runner.name, HW)
    assert flops.get_total_flops() == 2 * (f["matmul_flops"] + f["narrow_matmul_flops"])
    assert ops.exp == 2 * f["exp"] and ops.ops == f["tiles"]


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("runner,wl,pattern,why", [
    (NaiveLinear(), Workload.sequence(60, dtype="fp32"), Linear(chunk=16), "--chunk must divide"),
    (NaiveLinear(), Workload.sequence(64, dtype="fp32", phase="decode", decode_tokens=2), Linear(),
     "--decode-tokens 1"),
    (NaiveLinear(), Workload.sequence(64, dtype="bf16", phase="decode"), Linear(), "--dtype fp32"),
    (NaiveLinear(), Workload.sequence(64, dtype="fp32", phase="bwd"), Linear(), "forward"),
    (NaiveLowRank(), Workload.sequence(64, heads=4, kv_heads=2, dtype="fp32"), LowRank(8), "GQA"),
    (NaiveLowRank(), Workload.sequence(64, dtype="fp32"), LowRank(99), "--rank 99 exceeds"),
    (NaiveAgent(), Workload.sequence(60, dtype="fp32"), Agent(8), "--agents must divide"),
    (NaiveAgent(), Workload.on_grid((8, 8), dtype="fp32"), Agent(8), "--seq, not a --tokens grid"),
    (NaiveMoBA(), Workload.sequence(60, dtype="fp32"), MoBA(16, 2, causal=True), "--block-size must divide"),
    (NaiveMoBA(), Workload.sequence(64, dtype="fp32"), Linear(), "naive-moba runs moba patterns"),
])
def test_refusals_say_why(runner, wl, pattern, why):
    ok, reason = runner.supports(wl, pattern, "cpu")
    assert not ok and why in reason


# -- through validate run's pipeline -------------------------------------------------------------
def test_one_multiop_config_runs_checked_and_stored(tmp_path):
    """The CLI's --suite choice has no multiop entry (sim/cli/validate.py): the run API on a
    one-config list, the suite's smallest MoBA point (routing, pair-count check, reference)."""
    cfg = next(c for c in suite("multiop") if c.family == "moba")
    out = Outcome()
    with Store(tmp_path / "r.sqlite") as store:
        run_id = store.start_run("multiop", "cpu", {})
        run_config(store, run_id, cfg, "cpu", HW.name, all_runners(), 0.0, out)
        rows = store.rows()
    assert not out.failed and [m["kernel"] for m in out.measured] == ["naive-moba"]
    assert len(rows) == 1 and rows[0]["max_abs_err"] < 1e-5 and rows[0]["predicted_s"] > 0
