"""LongVQ (Transformer-VQ) attention: a naive numpy run quantises the keys, runs the block
recurrence with its codebook cache (or the non-causal codebook form), counts its own FLOPs and
exponentials, and must equal attention over the quantised keys computed directly."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.cli import main
from attnsim.errors import PatternError
from attnsim.patterns import Causal, LongVQ
from attnsim.spec import build_pattern

from .forms import assert_closed_form_equals_count


class Tally:
    def __init__(self):
        self.matmul, self.exps, self.other = {}, 0, 0

    def mm(self, name, a, b):
        self.matmul[name] = self.matmul.get(name, 0) + 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b


def quantise(t, k, c):
    """|k|^2 - 2 k.c + |c|^2 to every codeword, then the argmin (S - 1 compares per key)."""
    dist = (k * k).sum(1)[:, None] - 2 * t.mm("vq_assign", k, c.T) + (c * c).sum(1)[None, :]
    t.other += 2 * k.size + 2 * c.size + 3 * dist.size + k.shape[0] * (c.shape[0] - 1)
    return dist.argmin(1)


def aggregate(t, codes, v, s):
    """One-hot counts and value sums of a group of keys; code ``s`` is an empty slot (zero row)."""
    onehot = np.eye(s + 1)[codes][:, :s]
    t.other += onehot.size
    return onehot.sum(0), t.mm("aggregate", onehot.T, v)


def cache_view(t, counts, sums):
    """log-count biases (-inf for unused codes) and mean values of the cached keys."""
    t.other += sums.size + len(counts)
    return np.log(np.where(counts > 0, counts, np.nan)), sums / np.maximum(counts, 1)[:, None]


def attend(t, parts):
    """Softmax over the concatenated (scores, values) parts; 4 other FLOPs per score."""
    scores = np.nan_to_num(np.concatenate([s for s, _ in parts], axis=1), nan=-np.inf)
    t.exps += scores.size
    t.other += 4 * scores.size
    p = np.exp(scores - scores.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    outs, at = [], 0
    for name, (s, v) in zip(["cache_pv", "recent_pv"], parts):
        outs.append(t.mm(name, p[:, at:at + s.shape[1]], v))
        at += s.shape[1]
    t.other += outs[0].size if len(outs) > 1 else 0
    return sum(outs)


def block_caches(t, codes, v, s, blk):
    """Per block, the cache it reads (blocks <= b - 2); after block b, block b - 1 joins (block 0
    adds a block of empty slots, as Transformer-VQ's initial memory)."""
    counts, sums, views = np.zeros(s), np.zeros((s, v.shape[1])), []
    for b in range(len(codes) // blk):
        views.append(cache_view(t, counts, sums))
        prev = slice((b - 1) * blk, b * blk)
        add = aggregate(t, codes[prev], v[prev], s) if b else aggregate(t, np.full(blk, s), 0 * v[:blk], s)
        counts, sums = counts + add[0], sums + add[1]
    return views


def causal_run(t, qs, k, v, c, blk, rng):
    """Transformer-VQ's block recurrence for one KV head and its query heads; checks each output
    against softmax over all earlier quantised keys with the same position biases."""
    n, d = k.shape
    codes = quantise(t, k, c)
    khat, views = c[codes], block_caches(t, codes, v, c.shape[0], blk)
    rel = rng.standard_normal((2 * blk, d))  # Transformer-XL embedding per distance 0 .. 2L-1
    i, j = np.arange(blk)[:, None], np.arange(2 * blk)[None, :]
    dist = blk + i - j  # query i of a block, key j of (previous block, own block)
    for q in qs:
        u, vb = rng.standard_normal(d), rng.standard_normal(d)
        out = np.zeros((n, v.shape[1]))
        t.other += 2 * q.size  # q + u and q + v
        for b, (bias, mean) in enumerate(views):
            rows, prev = slice(b * blk, (b + 1) * blk), slice(max(b - 1, 0) * blk, b * blk)
            s_cache = t.mm("cache_qk", q[rows] + u, c.T) + bias
            kw = np.concatenate([khat[prev] if b else np.zeros((blk, d)), khat[rows]])
            vw = np.concatenate([v[prev] if b else np.zeros((blk, v.shape[1])), v[rows]])
            ac = t.mm("recent_qk", q[rows] + u, kw.T)
            by_dist = t.mm("recent_pos", q[rows] + vb, rel.T)
            bd = np.where((dist >= 0) & (dist <= blk), np.take_along_axis(by_dist, np.clip(dist, 0, 2 * blk - 1), 1), 0)
            t.other += s_cache.size + ac.size  # cache bias, ac + bd
            keep = (dist >= 0) & ((j >= blk) | (b > 0))
            out[rows] = attend(t, [(s_cache, mean), (np.where(keep, ac + bd, -np.inf), vw)])
        for row in range(n):  # direct: every earlier quantised key, position bias within L in the window
            back = row - np.arange(row + 1)
            window = np.arange(row + 1) >= row // blk * blk - blk
            pos = np.where(window & (back <= blk), rel[np.minimum(back, 2 * blk - 1)] @ (q[row] + vb), 0)
            scores = khat[:row + 1] @ (q[row] + u) + pos
            p = np.exp(scores - scores.max())
            np.testing.assert_allclose(out[row], p @ v[:row + 1] / p.sum(), rtol=1e-9, atol=1e-12)


def encoder_run(t, qs, k, v, c):
    codes = quantise(t, k, c)
    bias, mean = cache_view(t, *aggregate(t, codes, v, c.shape[0]))
    for q in qs:
        s_cache = t.mm("cache_qk", q, c.T) + bias
        t.other += s_cache.size
        out = attend(t, [(s_cache, mean)])
        scores = q @ c[codes].T
        p = np.exp(scores - scores.max(1, keepdims=True))
        np.testing.assert_allclose(out, p @ v / p.sum(1, keepdims=True), rtol=1e-9, atol=1e-12)


def naive_longvq(wl, p, rng):
    t = Tally()
    group = wl.q_heads // wl.kv_heads
    for _ in range(wl.batch * wl.kv_heads):
        c = rng.standard_normal((p.codebook, wl.qk_head_dim))
        k, v = rng.standard_normal((wl.kv_len, wl.qk_head_dim)), rng.standard_normal((wl.kv_len, wl.v_head_dim))
        qs = [rng.standard_normal((wl.q_len, wl.qk_head_dim)) for _ in range(group)]
        if p.causal:
            causal_run(t, qs, k, v, c, p.block_size, rng)
        else:
            encoder_run(t, qs, k, v, c)
    return t


@st.composite
def longvq_case(draw):
    causal, kv_heads = draw(st.booleans()), draw(st.integers(1, 2))
    common = dict(batch=draw(st.integers(1, 2)), heads=kv_heads * draw(st.integers(1, 2)), kv_heads=kv_heads,
                  head_dim=draw(st.integers(1, 5)), v_head_dim=draw(st.integers(1, 5)),
                  dtype=draw(st.sampled_from(["bf16", "fp32"])))
    s = draw(st.integers(1, 6))
    if causal:
        blk = draw(st.integers(1, 4))
        return Workload.sequence(blk * draw(st.integers(1, 4)), **common), LongVQ(s, blk)
    wl = Workload.sequence(draw(st.integers(1, 12)), kv_len=draw(st.integers(1, 12)), **common)
    return wl, LongVQ(s, None, causal=False)


@settings(max_examples=120, deadline=None)
@given(longvq_case())
def test_longvq_counts_equal_a_naive_transformer_vq_run(case):
    wl, p = case
    c = count(wl, p)
    t = naive_longvq(wl, p, np.random.default_rng(0))
    assert {k: v for k, v in c.flops.by_op.items() if v} == t.matmul
    assert c.flops.exp == t.exps
    assert c.flops.softmax_other == t.other
    assert c.pairs_per_head == wl.q_len * (p.codebook + (2 * p.block_size if p.causal else 0))


@settings(max_examples=150, deadline=None)
@given(longvq_case())
def test_longvq_closed_form_equals_the_exact_count(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, "fwd")


def test_longvq_is_linear_in_the_sequence():
    # per query S + 2L scores: 512 + 1024 = 1536 at any length, vs N for full attention
    for n in (8192, 65536):
        c = count(Workload.sequence(n, heads=8), LongVQ(512, 512))
        assert c.pairs_per_head == n * 1536
    # per query, d = dv = 128: VQ 2*512*128, aggregate 2*512*128, attention 2*1536*256, XL bias 2*1024*128
    big = Workload.sequence(65536, heads=8)
    per_query = 2 * (512 * 128 + 512 * 128 + 1536 * 256 + 1024 * 128)
    assert count(big, LongVQ(512, 512)).flops.matmul == 8 * 65536 * per_query
    causal = count(big, Causal()).flops.matmul
    assert causal / count(big, LongVQ(512, 512)).flops.matmul == pytest.approx(65537 * 256 / per_query)


def test_bad_longvq_parameters_name_the_flag():
    wl = Workload.sequence(100)
    for p, match in ((LongVQ(0, 10), "--codebook must be positive"), (LongVQ(8, 7), "--block-size 7 must divide"),
                     (LongVQ(8, 0), "positive --block-size")):
        with pytest.raises(PatternError, match=match):
            count(wl, p)
    with pytest.raises(PatternError, match="fwd only"):
        count(Workload.sequence(100, phase="decode"), LongVQ(8, 10))
    with pytest.raises(PatternError, match="needs --codebook"):
        build_pattern({"pattern": "longvq", "block_size": "64"})
    with pytest.raises(PatternError, match="needs --block-size"):
        build_pattern({"pattern": "longvq", "codebook": 64})
    with pytest.raises(PatternError, match="causal longvq only"):
        build_pattern({"pattern": "longvq", "codebook": 64, "block_size": "64", "causal": "0"})


def test_longvq_cli(capsys):
    assert main(["predict", "--pattern", "longvq", "--codebook", "64", "--block-size", "128", "--seq", "4096",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["pairs_per_head"] == 4096 * (64 + 256)
    assert main(["formula", "longvq", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["formulas"]["pairs_per_head"] == "N*S"
