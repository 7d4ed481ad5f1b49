"""FlashVGGT descriptor attention: a naive run resamples every frame's patch grid bilinearly (as
torch's interpolate, align_corners=False), builds the descriptors and key frames, attends them
and counts its own FLOPs; attnsim must match it (forward and one streaming chunk)."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.cli import main
from attnsim.errors import PatternError
from attnsim.patterns import Dense, Descriptor
from attnsim.patterns.opgraph import ops_of
from attnsim.spec import build_pattern

from .forms import assert_closed_form_equals_count


def softmax(x):
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return x / x.sum(axis=-1, keepdims=True)


def taps(n_in, n_out):
    """Per output index: (source index, weight) pairs of 1D linear interpolation, align_corners=False."""
    out = []
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(np.floor(src))
        i1 = i0 + (i0 < n_in - 1)
        out.append(((i0, 1 - (src - i0)), (i1, src - i0)))
    return out


def bilinear(grid, r, counter):
    """(h, w, C) -> (h//r, w//r, C); counts a multiply and an add per tap and channel."""
    h, w, ch = grid.shape
    ys, xs = taps(h, h // r), taps(w, w // r)
    out = np.zeros((h // r, w // r, ch))
    for i, ty in enumerate(ys):
        for j, tx in enumerate(xs):
            for (y, wy) in ty:
                for (x, wx) in tx:
                    out[i, j] += wy * wx * grid[y, x]
                    counter[0] += 2 * ch
    return out


def descriptors_of(frames_kv, h, w, r, special, counter):
    """Special tokens + resampled patch grid of each frame (rows of K and V side by side)."""
    return [np.concatenate([f[:special], bilinear(f[special:].reshape(h, w, -1), r, counter).reshape(-1, f.shape[1])])
            for f in frames_kv]


def naive_descriptor(wl, p, h, w, r, rng):
    """Returns (matmul flops by op, exps, resampling FLOPs) of one run over every (batch, head)."""
    flops, exps, resample = {}, 0, [0]

    def mm(name, a, b):
        flops[name] = flops.get(name, 0) + 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    d, dv, tokens = wl.qk_head_dim, wl.v_head_dim, p.special_tokens + h * w
    new = wl.q_len // tokens if wl.phase == "decode" else p.frames
    for _ in range(wl.batch * wl.kv_heads):
        kv = [rng.standard_normal((tokens, d + dv)) for _ in range(p.frames)]
        cached = descriptors_of(kv[:p.frames - new], h, w, r, p.special_tokens, [0])  # made by earlier chunks
        made = descriptors_of(kv[p.frames - new:], h, w, r, p.special_tokens, resample)
        keyframes = [f[p.special_tokens:] for f in kv[:p.keyframes]]  # first frame(s), full resolution
        keys = np.concatenate(keyframes + cached + made)
        assert len(keys) == p.frames * p.descriptors + p.keyframes * h * w
        for _ in range(wl.q_heads // wl.kv_heads):
            q = rng.standard_normal((wl.q_len, d))
            s = mm("qk", q, keys[:, :d].T)
            mm("pv", softmax(s), keys[:, d:])
            exps += s.size
    return flops, exps, resample[0]


@st.composite
def descriptor_case(draw):
    h, w, r = draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 4))
    r = min(r, h, w)
    special, frames = draw(st.integers(0, 2)), draw(st.integers(1, 4))
    tokens = special + h * w
    decode = draw(st.booleans())
    kv_heads = draw(st.integers(1, 2))
    common = dict(batch=draw(st.integers(1, 2)), heads=kv_heads * draw(st.integers(1, 2)), kv_heads=kv_heads,
                  head_dim=draw(st.integers(1, 5)), v_head_dim=draw(st.integers(1, 5)),
                  dtype=draw(st.sampled_from(["bf16", "fp32"])))
    if decode:
        wl = Workload.sequence(frames * tokens, phase="decode",
                               decode_tokens=draw(st.integers(1, frames)) * tokens, **common)
    else:
        wl = Workload.sequence(frames * tokens, **common)
    keyframes = draw(st.integers(0, 1 if decode else frames))
    return wl, Descriptor(frames, special + (h // r) * (w // r), keyframes, special), (h, w, r)


@settings(max_examples=120, deadline=None)
@given(descriptor_case())
def test_descriptor_counts_equal_a_naive_flashvggt_run(case):
    wl, p, (h, w, r) = case
    c = count(wl, p)
    flops, exps, resample = naive_descriptor(wl, p, h, w, r, np.random.default_rng(0))
    assert {k: v for k, v in c.flops.by_op.items() if v} == flops
    assert c.flops.exp == exps
    compress = next(op for op in ops_of(p.op_graph(wl, c.pairs_per_head)) if op.name == "compress")
    assert compress.other_flops == resample
    # bytes by hand: Q and O, plus each K/V row once (the new frames' full-resolution tokens in
    # decode, every token in the forward) and every descriptor row once (cached or appended)
    row = wl.batch * wl.kv_heads * (wl.qk_head_dim + wl.v_head_dim) * wl.element_bytes
    qo = wl.batch * wl.q_heads * wl.q_len * (wl.qk_head_dim * wl.element_bytes + wl.v_head_dim * wl.output_bytes)
    kv_rows = wl.q_len + p.keys(wl) if wl.phase == "decode" else wl.kv_len
    assert c.bytes.compulsory == qo + kv_rows * row


def test_bilinear_resampling_is_exact_on_linear_images_and_commutes_with_projections():
    rng = np.random.default_rng(2)
    h, w, r = 9, 7, 3
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = (2.0 * yy - 0.5 * xx + 3.0)[..., None]
    out = bilinear(image, r, [0])
    src_y = (np.arange(h // r) + 0.5) * h / (h // r) - 0.5
    src_x = (np.arange(w // r) + 0.5) * w / (w // r) - 0.5
    np.testing.assert_allclose(out[..., 0], 2.0 * src_y[:, None] - 0.5 * src_x[None, :] + 3.0)
    # why K/V may be resampled instead of the hidden states: weights sum to 1, so a linear
    # projection with bias commutes with resampling
    x, weight, bias = rng.standard_normal((h, w, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    np.testing.assert_allclose(bilinear(x @ weight + bias, r, [0]), bilinear(x, r, [0]) @ weight + bias)


@settings(max_examples=120, deadline=None)
@given(descriptor_case())
def test_descriptor_closed_form_equals_the_exact_count(case):
    wl, p, _ = case
    assert_closed_form_equals_count(wl, p, wl.phase)


def test_vggt_1000_frames_against_dense_global_attention():
    # 1000 frames x (5 special + 37x37 patches); r = 4 -> 9x9 + 5 = 86 descriptors per frame;
    # key frames: the first + 1000 // 200 = 5 k-means frames (FlashVGGT defaults)
    wl = Workload.sequence(1000 * 1374, heads=16, head_dim=64)
    keys = 1000 * 86 + 6 * 1369
    c, dense = count(wl, Descriptor(1000, 86, 6, 5)), count(wl, Dense())
    assert c.pairs_per_head == 1374000 * keys
    assert dense.flops.matmul / c.flops.matmul == pytest.approx(1374000 / keys)


def test_bad_descriptor_parameters_name_the_flag():
    wl = Workload.sequence(100)
    cases = [(Descriptor(3, 4), "--frames 3 must divide"), (Descriptor(0, 4), "--frames must be positive"),
             (Descriptor(4, 26), "--descriptors must be in"), (Descriptor(4, 2, 1, 2), "--descriptors must be in"),
             (Descriptor(4, 5, 5), "--keyframes must be in"), (Descriptor(4, 5, 1, 25), "--special-tokens")]
    for p, match in cases:
        with pytest.raises(PatternError, match=match):
            count(wl, p)
    with pytest.raises(PatternError, match="--decode-tokens 30 must be a chunk of whole frames"):
        count(Workload.sequence(100, phase="decode", decode_tokens=30), Descriptor(4, 5))
    with pytest.raises(PatternError, match="backward is not modelled"):
        count(Workload.sequence(100, phase="bwd"), Descriptor(4, 5))
    with pytest.raises(PatternError, match="needs --frames and --descriptors"):
        build_pattern({"pattern": "descriptor", "frames": 4})


def test_descriptor_cli(capsys):
    args = ["predict", "--pattern", "descriptor", "--frames", "10", "--descriptors", "86", "--special-tokens", "5",
            "--seq", "13740", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["pairs_per_head"] == 13740 * (10 * 86 + 1369)
    assert main(["formula", "descriptor", "--phase", "decode", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["symbols"]) >= {"Fr", "Dd", "Kf", "Sp"}
