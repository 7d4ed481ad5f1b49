"""CCA / CCGQA: exact counts against a naive NumPy CCA (arXiv 2510.04476 Listing 1) that counts
its own work, decode against the forward on the same sequence, and the closed forms."""
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count, predict
from attnsim.errors import PatternError
from attnsim.formulas import formula
from attnsim.patterns import CCA
from attnsim.patterns.opgraph import ops_of
from attnsim.spec import build_pattern

from .forms import assert_closed_form_equals_count


class NaiveCCA:
    """Listing 1 on one sequence, with random weights; every primitive adds its FLOPs to ``n``."""

    def __init__(self, hq: int, hk: int, d: int, k0: int, k1: int, rng):
        self.hq, self.hk, self.d, self.k0, self.k1 = hq, hk, d, k0, k1
        ch = (hq + hk) * d
        self.w0, self.b0 = rng.standard_normal((k0, ch)), rng.standard_normal(ch)
        self.w1, self.b1 = rng.standard_normal((hq + hk, k1, d, d)), rng.standard_normal((hq + hk, d))
        self.temp = rng.standard_normal(hk)
        self.n = Counter()

    def convs(self, inputs: np.ndarray, out0_prefix: np.ndarray | None):
        """Depth-wise conv over every full window of ``inputs``, then the head-grouped conv over
        ``out0_prefix`` + those outputs: (first-conv outputs, second-conv outputs)."""
        k0, k1, d = self.k0, self.k1, self.d
        rows0 = len(inputs) - k0 + 1
        out0 = np.stack([sum(self.w0[j] * inputs[t + j] for j in range(k0)) + self.b0 for t in range(rows0)])
        self.n["conv_seq"] += out0.size * (2 * k0 + 1)
        y = out0 if out0_prefix is None else np.concatenate([out0_prefix, out0])
        rows1 = len(y) - k1 + 1
        groups = y.reshape(len(y), self.hq + self.hk, d)
        out1 = np.stack([sum(np.einsum("goi,gi->go", self.w1[:, j], groups[t + j]) for j in range(k1)) + self.b1
                         for t in range(rows1)])
        self.n["conv_ch_mm"] += 2 * out1.size * d * k1
        self.n["conv_ch_bias"] += out1.size
        return out0, out1.reshape(rows1, -1)

    def finish(self, pre: np.ndarray, conv: np.ndarray, positions: np.ndarray):
        """q-k-mean, L2 norm with key temperature, RoPE: the latent q (T, hq, d) and k (T, hk, d)."""
        hq, hk, d = self.hq, self.hk, self.d
        g, t = hq // hk, len(pre)
        q_pre, k_pre = pre[:, :hq * d].reshape(t, hq, d), pre[:, hq * d:].reshape(t, hk, d)
        mean_q = (q_pre + np.repeat(k_pre, g, axis=1)) / 2
        mean_k = mean_q.reshape(t, hk, g, d).mean(axis=2)
        q = conv[:, :hq * d].reshape(t, hq, d) + mean_q
        k = conv[:, hq * d:].reshape(t, hk, d) + mean_k
        self.n["qk_mean"] += 2 * mean_q.size + g * mean_k.size + q.size + k.size
        q = q * np.sqrt(d) / np.sqrt((q**2).sum(-1, keepdims=True))
        k = k * np.sqrt(d) / np.sqrt((k**2).sum(-1, keepdims=True)) * np.exp(self.temp)[None, :, None]
        self.n["qk_norm"] += (q.size + k.size) * 2 + (t * hq + t * hk) * 1 + (q.size + k.size) * 2 + k.size
        self.n["exp"] += hk
        return self.rope(q, positions), self.rope(k, positions)

    def rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        half = self.d // 2
        angle = positions[:, None, None] * 10000.0 ** (-np.arange(self.d) % max(half, 1) / max(half, 1))
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1) if half else x
        self.n["rope"] += 3 * x.size
        return x * np.cos(angle) + rotated * np.sin(angle)

    def forward(self, pre: np.ndarray):
        """A whole sequence: Listing 1's front padding of k0 + k1 - 2 zeros."""
        padded = np.concatenate([np.zeros((self.k0 + self.k1 - 2, pre.shape[1])), pre])
        out0, conv = self.convs(padded, None)
        q, k = self.finish(pre, conv, np.arange(len(pre)))
        return q, k, padded, out0

    def decode(self, pre_new: np.ndarray, state_in: np.ndarray, state_out0: np.ndarray, start: int):
        _, conv = self.convs(np.concatenate([state_in, pre_new]), state_out0)
        return self.finish(pre_new, conv, start + np.arange(len(pre_new)))


def attention_pairs(q_len: int, kv_len: int, causal: bool) -> int:
    q = np.arange(q_len)[:, None] + kv_len - q_len
    return int(((np.arange(kv_len)[None, :] <= q) if causal else np.ones((q_len, kv_len), bool)).sum())


@st.composite
def cca_case(draw, phases=("fwd", "decode")):
    c = draw(st.sampled_from([1, 2, 4]))
    hk = draw(st.sampled_from([1, 2]))
    hq = hk * draw(st.sampled_from([1, 2, 3]))
    phase = draw(st.sampled_from(phases))
    seq = draw(st.integers(1, 20))
    common = dict(batch=draw(st.integers(1, 2)), heads=hq * c, kv_heads=hk * c,
                  head_dim=draw(st.sampled_from([2, 4, 6])), v_head_dim=draw(st.sampled_from([2, 8])),
                  dtype=draw(st.sampled_from(["bf16", "fp32"])))
    if phase == "decode":
        wl = Workload.sequence(seq, phase="decode", decode_tokens=draw(st.integers(1, seq)), **common)
    else:
        wl = Workload.sequence(seq, **common)
    return wl, CCA(c, causal=draw(st.booleans()), conv_seq=draw(st.integers(1, 3)), conv_ch=draw(st.integers(1, 3)))


def _ops(wl: Workload, p: CCA) -> dict:
    eff = p.effective_workload(wl)
    return {op.name: op for op in ops_of(p.op_graph(eff, p.pairs_per_head(eff)))}


@settings(max_examples=60)
@given(cca_case(), st.integers(0, 2**32 - 1))
def test_cca_counts_equal_the_naive_kernel(case, seed):
    wl, p = case
    rng = np.random.default_rng(seed)
    hq, hk, d, dv = wl.q_heads // p.compression, wl.kv_heads // p.compression, wl.qk_head_dim, wl.v_head_dim
    ref = NaiveCCA(hq, hk, d, p.conv_seq, p.conv_ch, rng)
    ch = (hq + hk) * d
    for _ in range(wl.batch):
        seq = rng.standard_normal((wl.kv_len, ch))
        if wl.phase == "decode":
            start, step = wl.kv_len - wl.q_len, ref.n
            ref.n = Counter()  # the earlier steps that left the state: not this step's work
            _, _, padded, out0 = ref.forward(seq)
            ref.n = step
            ref.decode(seq[start:], *decode_state(p, padded, out0, start), start)
        else:
            ref.forward(seq)
        ref.n["pairs"] += hq * attention_pairs(wl.q_len, wl.kv_len, p.causal)
    ops = _ops(wl, p)
    assert ops["conv_seq"].other_flops == ref.n["conv_seq"]
    assert ops["conv_ch"].matmul_flops == ref.n["conv_ch_mm"] and ops["conv_ch"].other_flops == ref.n["conv_ch_bias"]
    assert ops["qk_mean"].other_flops == ref.n["qk_mean"]
    assert ops["qk_norm"].other_flops == ref.n["qk_norm"]
    assert ops["qk_norm"].exp * wl.batch == ref.n["exp"]  # exp(temperature): once per kernel, not per sequence
    assert ops["rope"].other_flops == ref.n["rope"]
    c = count(wl, p)
    assert c.attended_pairs == ref.n["pairs"]
    assert c.flops.by_op["qk"] == 2 * ref.n["pairs"] * d and c.flops.by_op["pv"] == 2 * ref.n["pairs"] * dv


def decode_state(p: CCA, padded: np.ndarray, out0: np.ndarray, start: int):
    """The conv state before position ``start``: the last k0 - 1 (zero-padded) inputs and the
    last k1 - 1 first-conv outputs a forward over the same sequence computed."""
    pad = p.conv_seq + p.conv_ch - 2
    return padded[start + pad - (p.conv_seq - 1): start + pad], out0[start: start + p.conv_ch - 1]


@settings(max_examples=60)
@given(cca_case(phases=("decode",)), st.integers(0, 2**32 - 1))
def test_cca_decode_with_the_counted_state_equals_the_forward(case, seed):
    wl, p = case
    rng = np.random.default_rng(seed)
    hq, hk, d = wl.q_heads // p.compression, wl.kv_heads // p.compression, wl.qk_head_dim
    ref = NaiveCCA(hq, hk, d, p.conv_seq, p.conv_ch, rng)
    seq = rng.standard_normal((wl.kv_len, (hq + hk) * d))
    q_full, k_full, padded, out0 = ref.forward(seq)
    start = wl.kv_len - wl.q_len
    state_in, state_out0 = decode_state(p, padded, out0, start)
    q_new, k_new = ref.decode(seq[start:], state_in, state_out0, start)
    np.testing.assert_allclose(q_new, q_full[start:], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(k_new, k_full[start:], rtol=1e-9, atol=1e-9)
    # the state the count charges is exactly what the step needed
    e = wl.element_bytes
    assert count(wl, p).bytes.by_tensor["conv_state"] == wl.batch * (len(state_in) + len(state_out0)) * seq.shape[1] * e


@settings(max_examples=150)
@given(cca_case())
def test_cca_closed_forms_equal_exact_counts(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, wl.phase)


def test_cca_4x_against_mha_at_16k():
    # Sec. I / Fig. 5: E = 2048, head dim 128 (16 MHA heads), CCA-4x -> 4 latent heads
    wl = Workload.sequence(16384, heads=16, head_dim=128)
    r = predict(wl, CCA(4), "H100-SXM")
    s2 = 2 * 16384 * 16384 * 128 * 2  # QK^T and PV of one head
    conv = 2 * 16384 * (4 + 4) * 128 * 128 * 2  # head-grouped conv, 8 latent q/k heads, 2 taps
    assert r.pattern.counts.flops.matmul == 4 * s2 + conv
    assert r.speedup_vs_dense["flop"] == pytest.approx(16 * s2 / (4 * s2 + conv))
    assert r.pattern.counts.kernels == ("cca",)
    # CCGQA 2x8x (C1 = 2, C2 = 8): --compression 2 on a GQA-4 layout (16 heads, 4 KV heads)
    ccgqa = count(Workload.sequence(1024, heads=16, kv_heads=4), CCA(2))
    assert (ccgqa.workload.q_heads, ccgqa.workload.kv_heads) == (8, 2)


def test_cca_decode_reads_the_latent_cache():
    wl = Workload.sequence(4096, heads=16, kv_heads=16, head_dim=128, phase="decode")
    c = count(wl, CCA(4, causal=True))
    e = 2
    assert c.bytes.by_tensor["k_cache"] == 4 * 4095 * 128 * e and c.bytes.by_tensor["k_new"] == 4 * 128 * e
    assert c.bytes.by_tensor["conv_state"] == (2 + 2 - 2) * 8 * 128 * e


@pytest.mark.parametrize("kwargs,wl_kw,match", [
    (dict(compression=0), {}, "--compression must be positive"),
    (dict(compression=3), {}, "--compression 3 must divide --heads 16"),
    (dict(compression=4), dict(kv_heads=2), "--compression 4 must divide --kv-heads 2"),
    (dict(compression=4, conv_seq=0), {}, "convolution taps must be positive"),
    (dict(compression=4), dict(phase="bwd"), "--pattern cca models --phase fwd and decode"),
    (dict(compression=4), dict(kv_len=128), "--pattern cca is self-attention"),
])
def test_bad_cca_parameters_name_the_flag(kwargs, wl_kw, match):
    with pytest.raises(PatternError, match=match):
        count(Workload.sequence(64, heads=16, **wl_kw), CCA(**kwargs))


def test_cca_refusals_and_flags(capsys):
    with pytest.raises(PatternError, match="--pattern cca is for 1D sequences"):
        count(Workload.on_grid((4, 4), heads=4), CCA(2))
    with pytest.raises(PatternError, match="--pattern cca needs --compression"):
        build_pattern({"pattern": "cca"})
    with pytest.raises(PatternError, match="--causal for cca is on or off"):
        build_pattern({"pattern": "cca", "compression": 2, "causal": "1x1"})
    with pytest.raises(PatternError, match="--pattern cca models --phase fwd and decode only"):
        formula(CCA(2), "fwd+bwd")
    from attnsim.cli import main

    assert main(["formula", "cca", "--phase", "decode", "--json"]) == 0
    assert "k_ch" in json.loads(capsys.readouterr().out)["symbols"]
    assert main(["predict", "--pattern", "cca", "--compression", "4", "--heads", "16", "--seq", "2048",
                 "--causal", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pattern_workload"]["q_heads"] == 4
