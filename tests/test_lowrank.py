"""Low-rank (Linformer) attention: a naive numpy forward and backward count their own FLOPs and
exponentials, compute Linformer's output and its exact gradients, and must match attnsim."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.cli import main
from attnsim.errors import PatternError
from attnsim.patterns import LowRank
from attnsim.spec import build_pattern

from .forms import assert_closed_form_equals_count


def softmax(x):
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return x / x.sum(axis=-1, keepdims=True)


class Counter:
    def __init__(self):
        self.flops, self.exps = {}, 0

    def mm(self, name, a, b, counted=True):
        if counted:
            self.flops[name] = self.flops.get(name, 0) + 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b


def linformer_group(c, qs, k, v, E, F, dos, fwd, bwd, prefix):
    """One KV head and its query heads: forward (counted when ``fwd``), then backward (when
    ``bwd``); the backward reads the forward's saved K', V', O and LSE, as autograd does."""
    kp, vp = c.mm("project_k", E, k, fwd), c.mm("project_v", F, v, fwd)
    grads, dkp_sum, dvp_sum = [], np.zeros_like(kp), np.zeros_like(vp)
    for q, do in zip(qs, dos):
        s = c.mm("qk", q, kp.T, fwd)
        o = c.mm("pv", softmax(s), vp, fwd)
        c.exps += s.size if fwd else 0
        np.testing.assert_allclose(o, softmax(q @ (E @ k).T) @ (F @ v), rtol=1e-9, atol=1e-12)
        if not bwd:
            continue
        lse = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1)
        p = np.exp(c.mm(prefix + "qk_recompute", q, kp.T) - lse[:, None])
        c.exps += p.size
        dvp_sum += c.mm(prefix + "dv_proj", p.T, do)
        dp = c.mm(prefix + "dp", do, vp.T)
        ds = p * (dp - (do * o).sum(1, keepdims=True))
        grads.append(c.mm(prefix + "dq", ds, kp))
        dkp_sum += c.mm(prefix + "dk_proj", ds.T, q)
    if bwd:
        grads += [c.mm(prefix + "dk", E.T, dkp_sum), c.mm(prefix + "dE", dkp_sum, k.T),
                  c.mm(prefix + "dv", F.T, dvp_sum), c.mm(prefix + "dF", dvp_sum, v.T)]
    return grads


def naive_linformer(wl, rank, rng):
    c = Counter()
    fwd, bwd = wl.phase in ("fwd", "fwd+bwd"), wl.phase in ("bwd", "fwd+bwd")
    prefix = "bwd_" if wl.phase == "fwd+bwd" else ""
    d, dv, n, m, group = wl.qk_head_dim, wl.v_head_dim, wl.q_len, wl.kv_len, wl.q_heads // wl.kv_heads
    E, F = rng.standard_normal((rank, m)), rng.standard_normal((rank, m))
    for _ in range(wl.batch * wl.kv_heads):
        qs = [rng.standard_normal((n, d)) for _ in range(group)]
        dos = [rng.standard_normal((n, dv)) for _ in range(group)]
        linformer_group(c, qs, rng.standard_normal((m, d)), rng.standard_normal((m, dv)), E, F, dos,
                        fwd, bwd, prefix)
    return c


@st.composite
def lowrank_case(draw):
    kv_heads = draw(st.integers(1, 2))
    wl = Workload.sequence(draw(st.integers(1, 16)), kv_len=draw(st.integers(1, 16)), batch=draw(st.integers(1, 2)),
                           heads=kv_heads * draw(st.integers(1, 2)), kv_heads=kv_heads,
                           head_dim=draw(st.integers(1, 6)), v_head_dim=draw(st.integers(1, 6)),
                           dtype=draw(st.sampled_from(["bf16", "fp32", "fp8"])),
                           phase=draw(st.sampled_from(["fwd", "bwd", "fwd+bwd"])))
    return wl, LowRank(rank=draw(st.integers(1, wl.kv_len)))


@settings(max_examples=150, deadline=None)
@given(lowrank_case())
def test_lowrank_flops_equal_a_naive_linformer_run(case):
    wl, p = case
    c = count(wl, p)
    naive = naive_linformer(wl, p.rank, np.random.default_rng(0))
    assert {k: v for k, v in c.flops.by_op.items() if v} == naive.flops
    assert c.flops.exp == naive.exps
    assert c.pairs_per_head == wl.q_len * p.rank


def test_the_naive_backward_is_the_gradient_of_linformer():
    rng = np.random.default_rng(1)
    n, m, rank, d, dv = 5, 7, 3, 4, 2
    q, k, v = rng.standard_normal((n, d)), rng.standard_normal((m, d)), rng.standard_normal((m, dv))
    E, F, do = rng.standard_normal((rank, m)), rng.standard_normal((rank, m)), rng.standard_normal((n, dv))
    dq, dk, dE, dv_, dF = linformer_group(Counter(), [q], k, v, E, F, [do], True, True, "")

    def loss(q, k, v, E, F):
        return float((softmax(q @ (E @ k).T) @ (F @ v) * do).sum())

    args = [q, k, v, E, F]
    for i, analytic in enumerate([dq, dk, dv_, dE, dF]):
        numeric = np.zeros_like(args[i])
        for idx in np.ndindex(*args[i].shape):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[i][idx] += 1e-6
            minus[i][idx] -= 1e-6
            numeric[idx] = (loss(*plus) - loss(*minus)) / 2e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


@settings(max_examples=150, deadline=None)
@given(lowrank_case())
def test_lowrank_closed_form_equals_the_exact_count(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, wl.phase)


def test_lowrank_forward_bytes_by_hand():
    # 1 x 4 heads x 1024 queries/keys x d 64, bf16, rank 128: Q, K, V, O 512 KiB each, E and F 256 KiB each
    c = count(Workload.sequence(1024, heads=4, head_dim=64), LowRank(128))
    assert c.bytes.compulsory == 4 * (4 * 1024 * 64 * 2) + 2 * (128 * 1024 * 2)
    assert c.flops.matmul == 2 * 4 * 128 * 1024 * 128 * 2  # projections and attention: 2 x (2 rank M 2d) per head


def test_bad_lowrank_parameters_name_the_flag():
    wl = Workload.sequence(64)
    for bad, match in ((LowRank(0), "--rank must be positive"), (LowRank(65), "--rank 65 exceeds the 64 keys")):
        with pytest.raises(PatternError, match=match):
            count(wl, bad)
    with pytest.raises(PatternError, match="no --phase decode"):
        count(Workload.sequence(64, phase="decode"), LowRank(8))
    with pytest.raises(PatternError, match="--causal does not apply.*future"):
        build_pattern({"pattern": "lowrank", "rank": 8, "causal": "all"})
    with pytest.raises(PatternError, match="needs --rank"):
        build_pattern({"pattern": "lowrank"})


def test_lowrank_cli(capsys):
    assert main(["predict", "--pattern", "lowrank", "--rank", "256", "--seq", "4096", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["pairs_per_head"] == 4096 * 256 and out["speedup_vs_dense"]["flop"] == pytest.approx(8.0)
    assert main(["formula", "lowrank", "--phase", "bwd", "--json"]) == 0
    assert "k" in json.loads(capsys.readouterr().out)["symbols"]
