"""MLA: a naive numpy reference that runs both formulations, counts its own FLOPs per kept pair,
and must agree with attnsim's op graph (and with itself: absorbing W_UK/W_UV is exact algebra)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.patterns import MLA, Dense


class Flops:
    """Counts 2*m*n*k per product, named like attnsim's ops."""

    def __init__(self):
        self.by_op = {}

    def mm(self, name, a, b):
        self.by_op[name] = self.by_op.get(name, 0) + 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b


def naive_mla(wl, p, mode, rng):
    nope, r, rope, dv = wl.qk_head_dim - p.rope_dim, p.kv_lora_rank, p.rope_dim, wl.v_head_dim
    f, outs = Flops(), []
    mask = p.mask(wl)
    w_uk = rng.standard_normal((r, wl.q_heads, nope))
    w_uv = rng.standard_normal((r, wl.q_heads, dv))
    for _ in range(wl.batch):
        c_kv, k_rope = rng.standard_normal((wl.kv_len, r)), rng.standard_normal((wl.kv_len, rope))
        q_nope = rng.standard_normal((wl.q_len, wl.q_heads, nope))
        q_rope = rng.standard_normal((wl.q_len, wl.q_heads, rope))
        out = np.zeros((wl.q_len, wl.q_heads, dv))
        for h in range(wl.q_heads):
            if mode == "up-project":
                k_nope = f.mm("k_nope_up", c_kv, w_uk[:, h, :])
                v = f.mm("v_up", c_kv, w_uv[:, h, :])
            else:
                q_lat = f.mm("q_absorb", q_nope[:, h, :], w_uk[:, h, :].T)
            for i in range(wl.q_len):
                keys = np.flatnonzero(mask[i])
                if mode == "up-project":
                    s = f.mm("qk", q_nope[i:i + 1, h], k_nope[keys].T) + q_rope[i:i + 1, h] @ k_rope[keys].T
                    f.by_op["qk"] += 2 * len(keys) * rope  # the rope half of the same score product
                else:
                    s = f.mm("qk_latent", q_lat[i:i + 1], c_kv[keys].T) + q_rope[i:i + 1, h] @ k_rope[keys].T
                    f.by_op["qk_latent"] += 2 * len(keys) * rope
                prob = np.exp(s - s.max())
                prob /= prob.sum()
                if mode == "up-project":
                    out[i, h] = f.mm("pv", prob, v[keys])[0]
                else:
                    o_lat = f.mm("pv_latent", prob, c_kv[keys])
                    out[i, h] = f.mm("v_up", o_lat, w_uv[:, h, :])[0]
        outs.append(out)
    return f.by_op, outs


@st.composite
def mla_case(draw):
    rope = draw(st.integers(0, 4))
    q_len = draw(st.integers(1, 6))
    wl = Workload.sequence(q_len, kv_len=q_len + draw(st.integers(0, 6)), batch=draw(st.integers(1, 2)),
                           heads=draw(st.integers(1, 3)), head_dim=rope + draw(st.integers(1, 5)),
                           v_head_dim=draw(st.integers(1, 5)))
    return wl, MLA(kv_lora_rank=draw(st.integers(1, 8)), rope_dim=rope, causal=draw(st.booleans()))


@settings(max_examples=200)
@given(mla_case())
def test_mla_op_flops_equal_a_naive_run_and_both_modes_agree(case):
    wl, p = case
    results = {}
    for mode in ("up-project", "absorbed"):
        pattern = MLA(p.kv_lora_rank, p.rope_dim, p.causal, mode)
        flops, outs = naive_mla(wl, pattern, mode, np.random.default_rng(0))
        c = count(wl, pattern)
        assert c.flops.by_op == flops
        assert c.flops.exp == wl.heads_total * int(pattern.mask(wl).sum())
        results[mode] = outs
    for a, b in zip(results["up-project"], results["absorbed"]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_decode_reads_only_the_latent_cache():
    # DeepSeek-V3 decode: 64 sequences x 32K cached tokens, 128 heads, qk 192 (128+64), v 128.
    # KV bytes = 64 * 32768 * (512 + 64) * 2 B = 2.416 GB, against MHA's 64 * 32768 * 128 heads *
    # (192 + 128) * 2 B = 171.8 GB: the latent is 576 / (128 * 320) = 1.41 % of the MHA cache.
    wl = Workload.sequence(32768, batch=64, heads=128, head_dim=192, v_head_dim=128, phase="decode")
    mla, mha = count(wl, MLA()), count(wl, Dense())
    kv = mla.bytes.by_tensor["c_kv"] + mla.bytes.by_tensor["k_rope"]
    assert kv == 64 * 32768 * (512 + 64) * 2
    assert mha.bytes.by_tensor["k"] + mha.bytes.by_tensor["v"] == 64 * 32768 * 128 * 320 * 2
    r = predict(wl, MLA(), "H200")
    assert r.pattern.counts.kernels == ("attention", "output")
    assert r.speedup_vs_dense["roofline"] > 50  # decode is memory-bound for MHA, not for MLA


@pytest.mark.parametrize("kwargs,wl_kwargs,match", [
    (dict(kv_lora_rank=0), {}, "--kv-lora-rank"),
    (dict(rope_dim=200), {}, "must exceed --rope-dim"),
    (dict(), dict(phase="bwd"), "backward is not modelled"),
    (dict(mode="sideways"), {}, "mode"),
])
def test_bad_mla_parameters_name_the_field(kwargs, wl_kwargs, match):
    with pytest.raises(PatternError, match=match):
        count(Workload.sequence(64, head_dim=192, **wl_kwargs), MLA(**kwargs))
