"""MLA: a naive numpy reference that runs both formulations, counts its own FLOPs per kept pair,
and must agree with attnsim's op graph (and with itself: absorbing W_UK/W_UV is exact algebra)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.patterns import MLA, Dense

from .test_moba import Counter, assert_directional_derivative, bwd_only, rows_backward, rows_forward


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
    (dict(mode="absorbed"), dict(phase="bwd"), "--mla-mode absorbed is the inference formulation"),
    (dict(mode="sideways"), {}, "mode"),
])
def test_bad_mla_parameters_name_the_field(kwargs, wl_kwargs, match):
    with pytest.raises(PatternError, match=match):
        count(Workload.sequence(64, head_dim=192, **wl_kwargs), MLA(**kwargs))


# -- backward (up-project, the training formulation) -------------------------------------------
def mla_forward(q, c_kv, k_rope, w_uk, w_uv, entries):
    """Per head: K = [c_kv W_UK | k_rope], V = c_kv W_UV, softmax attention over each row's keys."""
    return [rows_forward(q[h], np.hstack([c_kv @ w_uk[:, h], k_rope]), c_kv @ w_uv[:, h], entries)
            for h in range(q.shape[0])]


def naive_mla_backward(wl, p, rng):
    """The chain rule by hand: FlashAttention-2 per head on the up-projected K, V; the shared RoPE
    key's gradient sums over heads; then the up-projection's dgrad and wgrad."""
    nope, r, rope, dv, h = wl.qk_head_dim - p.rope_dim, p.kv_lora_rank, p.rope_dim, wl.v_head_dim, wl.q_heads
    f, entries = Counter(), [(np.flatnonzero(row), 0.0) for row in p.mask(wl)]
    for _ in range(wl.batch):
        q = rng.standard_normal((h, wl.q_len, nope + rope))
        c_kv, k_rope = rng.standard_normal((wl.kv_len, r)), rng.standard_normal((wl.kv_len, rope))
        w_uk, w_uv = rng.standard_normal((r, h, nope)), rng.standard_normal((r, h, dv))
        do = rng.standard_normal((h, wl.q_len, dv))
        grads = [np.zeros_like(x) for x in (q, c_kv, k_rope, w_uk, w_uv)]
        for head, (o, lse) in enumerate(mla_forward(q, c_kv, k_rope, w_uk, w_uv, entries)):
            k = np.hstack([c_kv @ w_uk[:, head], k_rope])
            grads[0][head], dk, dv_head = rows_backward(f, q[head], k, c_kv @ w_uv[:, head], o, lse, do[head],
                                                        entries)
            grads[2] += dk[:, nope:]
            grads[1] += f.mm("bwd_k_nope_up_dgrad", dk[:, :nope], w_uk[:, head].T)
            grads[1] += f.mm("bwd_v_up_dgrad", dv_head, w_uv[:, head].T)
            grads[3][:, head] = f.mm("bwd_w_uk_wgrad", c_kv.T, dk[:, :nope])
            grads[4][:, head] = f.mm("bwd_w_uv_wgrad", c_kv.T, dv_head)

        def loss(*x):
            return sum(float((o * do[i]).sum()) for i, (o, _) in enumerate(mla_forward(*x, entries)))

        assert_directional_derivative(loss, (q, c_kv, k_rope, w_uk, w_uv), grads, rng)
    return f


@settings(max_examples=200)
@given(mla_case(), st.sampled_from(["bwd", "fwd+bwd"]), st.sampled_from(["auto", "up-project"]),
       st.integers(0, 2**32 - 1))
def test_mla_backward_equals_a_naive_chain_rule_run(case, phase, mode, seed):
    wl, p = case
    wl, p = wl.with_(phase=phase), MLA(p.kv_lora_rank, p.rope_dim, p.causal, mode)
    c = count(wl, p)
    f = naive_mla_backward(wl, p, np.random.default_rng(seed))
    assert bwd_only(c.flops.by_op) == f.by_op
    pairs = wl.heads_total * int(p.mask(wl).sum())
    assert f.exp == pairs and c.flops.exp == pairs * (2 if phase == "fwd+bwd" else 1)


def test_mla_backward_bytes_by_hand():
    # DeepSeek-V3 shapes, 4K tokens, batch 1, bf16: the backward reads Q (4096 x 128 heads x 192),
    # the saved K_nope, V, O and dO (4 x 4096 x 128 heads x 128), the shared RoPE key (4096 x 64) and
    # latent (4096 x 512), W_UK (512 x 128 x 128), W_UV (same), the fp32 LSE (4096 x 128 x 4 B);
    # it writes dQ, dK_rope, dc_kv, dW_UK, dW_UV.
    wl = Workload.sequence(4096, heads=128, head_dim=192, v_head_dim=128, phase="bwd")
    c = count(wl, MLA())
    t, w = 4096 * 128, 512 * 128 * 128
    reads = 2 * (t * 192 + 4 * t * 128 + 4096 * 64 + 4096 * 512 + 2 * w) + 4 * t
    writes = 2 * (t * 192 + 4096 * 64 + 4096 * 512 + 2 * w)
    assert c.bytes.compulsory == reads + writes
    assert set(c.kernels) == {"bwd_delta", "bwd_attention", "bwd_dq_convert", "bwd_decompress_dgrad",
                              "bwd_decompress_wgrad"}
