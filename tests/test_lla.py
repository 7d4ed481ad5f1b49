"""Local Linear Attention: a naive numpy run of FlashLLA's forward (pass 1, conjugate gradient,
pass 2), one query at a time, counts its own FLOPs and exponentials; attnsim must match it, and
with as many CG iterations as the head dim it must equal the direct solve of the paper."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.cli import main
from attnsim.errors import PatternError
from attnsim.patterns import Causal, LocalLinear
from attnsim.spec import build_pattern

from .forms import assert_closed_form_equals_count


class Tally:
    def __init__(self):
        self.matmul, self.exps, self.other = {}, 0, 0

    def dot(self, name, a, b):
        """A (query, key) product contracting over the head dim: 2 FLOPs per multiply-add."""
        self.matmul[name] = self.matmul.get(name, 0) + 2 * a.size
        return float(a @ b)

    def acc(self, name, weight, vec):
        self.matmul[name] = self.matmul.get(name, 0) + 2 * vec.size
        return weight * vec

    def vdot(self, a, b):
        self.other += 2 * a.size
        return float(a @ b)

    def axpy(self, alpha, x, y):
        self.other += 2 * x.size
        return alpha * x + y


def lla_row(t, q, keys, values, scale, ridge, iters):
    """FlashLLA's forward for one query over its causal keys, counted as the kernel computes it."""
    s = np.array([t.dot("stats_qk", q, k) * scale for k in keys])
    t.other += 4 * len(keys)  # scale, running max, subtract, row sum
    m = s.max()
    w = np.exp(s - m)
    t.exps += len(keys)
    omega = w.sum()
    mu_tilde = sum(t.acc("stats_wk", wj, k) for wj, k in zip(w, keys))
    y = t.axpy(-omega, q, mu_tilde)
    r, p, x = y.copy(), y.copy(), np.zeros_like(q)
    norm0 = t.vdot(r, r)
    lam = ridge * omega
    t.other += 1
    active = norm0 != 0
    for _ in range(iters):
        sigma_p = np.zeros_like(q)
        for k in keys:
            pk = t.dot("cg_pk", p, k)
            wj = np.exp(t.dot("cg_qk", q, k) * scale - m)
            t.exps += 1
            t.other += 3  # scale, subtract, w * pk
            sigma_p += t.acc("cg_sigma_p", wj * pk, k)
        pq, pm = t.vdot(p, q), t.vdot(p, mu_tilde)
        t.other += 1  # omega * pq
        sigma_p = t.axpy(omega * pq, q, t.axpy(-pm, q, t.axpy(-pq, mu_tilde, t.axpy(lam, p, sigma_p))))
        norm, denorm = t.vdot(r, r), t.vdot(p, sigma_p)
        alpha = norm / (denorm + 1e-10) if active else 0.0
        x, r = t.axpy(alpha, p, x), t.axpy(-alpha, sigma_p, r)
        norm_new = t.vdot(r, r)
        active = active and not norm_new <= max(1e-12, norm0) * 1e-12
        beta = norm_new / norm if active else 0.0
        p = t.axpy(beta, p, r)
        t.other += 6  # alpha (add, divide), stop test (max, multiply, compare), beta
    mu = t.axpy(-omega, q, mu_tilde)
    delta = omega - t.vdot(mu, x)
    delta += 1e-12 * np.sign(delta)
    rq = t.vdot(x, q)
    t.other += 2  # eps * sign, add
    out = np.zeros(values.shape[1])
    for k, v in zip(keys, values):
        wj = np.exp(t.dot("out_qk", q, k) * scale - m)
        t.exps += 1
        coef = wj * (1 - t.dot("out_rk", x, k) + rq) / delta
        t.other += 6  # scale, subtract; 1 - rk + rq; times w, over delta
        out += t.acc("out_pv", coef, v)
    return out


def direct_lla(q, keys, values, scale, ridge):
    """The paper's closed form with an explicit d x d solve (FlashLLA's naive reference)."""
    w = np.exp(keys @ q * scale - (keys @ q * scale).max())
    diff = keys - q
    mu = w @ diff
    sigma = (w[:, None] * diff).T @ diff + ridge * w.sum() * np.eye(len(q))
    rho = np.linalg.solve(sigma, mu)
    return (w * (1 - diff @ rho)) @ values / (w.sum() - mu @ rho)


def naive_lla(wl, iters, rng, ridge=1.0):
    t, d = Tally(), wl.qk_head_dim
    for _ in range(wl.batch * wl.kv_heads):
        k, v = rng.standard_normal((wl.kv_len, d)), rng.standard_normal((wl.kv_len, d))
        for _ in range(wl.q_heads // wl.kv_heads):
            q = rng.standard_normal((wl.q_len, d))
            for i in range(wl.q_len):
                out = lla_row(t, q[i], k[:i + 1], v[:i + 1], d ** -0.5, ridge, iters)
                if iters >= d:  # CG solves a d x d system exactly in d steps
                    np.testing.assert_allclose(out, direct_lla(q[i], k[:i + 1], v[:i + 1], d ** -0.5, ridge),
                                               rtol=1e-5, atol=1e-6)  # CG adds 1e-10 to p.Sigma p
    return t


@st.composite
def lla_case(draw):
    kv_heads, d = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    wl = Workload.sequence(draw(st.integers(1, 12)), batch=draw(st.integers(1, 2)), kv_heads=kv_heads,
                           heads=kv_heads * draw(st.integers(1, 2)), head_dim=d,
                           dtype=draw(st.sampled_from(["bf16", "fp32"])))
    return wl, LocalLinear(draw(st.integers(0, 5)))


@settings(max_examples=80, deadline=None)
@given(lla_case())
def test_lla_counts_equal_a_naive_flashlla_run(case):
    wl, p = case
    c = count(wl, p)
    t = naive_lla(wl, p.cg_iters, np.random.default_rng(0))
    assert {k: v for k, v in c.flops.by_op.items() if v} == t.matmul
    assert c.flops.exp == t.exps
    assert c.flops.softmax_other == t.other
    assert c.pairs_per_head == wl.q_len * (wl.q_len + 1) // 2


@settings(max_examples=150, deadline=None)
@given(lla_case())
def test_lla_closed_form_equals_the_exact_count(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, "fwd")


def test_lla_costs_many_softmax_attentions():
    # d = 64, 32 CG iterations: (8 + 6*32) * 64 + 2 * 64 = 12928 FLOPs per pair vs 4 * 64 = 256 for softmax
    wl = Workload.sequence(4096, heads=8, head_dim=64)
    ratio = count(wl, LocalLinear()).flops.matmul / count(wl, Causal()).flops.matmul
    assert ratio == pytest.approx(12928 / 256)
    assert count(wl, LocalLinear()).flops.exp == 34 * count(wl, Causal()).flops.exp


def test_bad_lla_parameters_name_the_flag():
    with pytest.raises(PatternError, match="--cg-iters must be >= 0"):
        count(Workload.sequence(64), LocalLinear(-1))
    for wl, match in ((Workload.sequence(64, phase="decode"), "fwd only"),
                      (Workload.sequence(64, phase="bwd"), "backward"),
                      (Workload.sequence(64, kv_len=128), "no --kv-seq"),
                      (Workload.sequence(64, head_dim=64, v_head_dim=128), "--v-head-dim")):
        with pytest.raises(PatternError, match=match):
            count(wl, LocalLinear())
    with pytest.raises(PatternError, match="causal only"):
        build_pattern({"pattern": "lla", "causal": "0"})


def test_lla_cli(capsys):
    assert main(["predict", "--pattern", "lla", "--cg-iters", "8", "--seq", "2048", "--head-dim", "64",
                 "--baseline", "causal", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["speedup_vs_dense"]["flop"] == pytest.approx(256 / ((8 + 48) * 64 + 128))
    assert main(["formula", "lla", "--json"]) == 0
    assert "Icg" in json.loads(capsys.readouterr().out)["symbols"]
