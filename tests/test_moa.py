"""MoA: per-head counts equal the kernels' rules run on masks (prefill: the 64-block loop of
block_sparse_attention_prefill.py; decode: the circular cache of cache_utils.py), summed over heads."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.formulas import evaluate, formula
from attnsim.patterns import MoA
from attnsim.patterns.moa import elastic_windows
from attnsim.spec import build_pattern


def prefill_mask(n: int, window: int, sinks: int, block: int = 64) -> np.ndarray:
    """The prefill kernel's loop: query block m visits key blocks b <= m unless
    max_sink_idx < b < min_local_idx, and masks keys after the query."""
    mask = np.zeros((n, n), dtype=bool)
    for m in range(-(-n // block)):
        max_sink, min_local = min(sinks // block - 1, m), max(0, m + 1 - window // block)
        rows = slice(m * block, min((m + 1) * block, n))
        for b in range(m + 1):
            if max_sink < b < min_local:
                continue
            mask[rows, b * block:(b + 1) * block] = True
    return np.tril(mask)


def decode_keys(t: int, window: int, sinks: int) -> int:
    """MoA's circular cache after the t-th token: the first `sinks` tokens and the last `window`."""
    kept = set(range(min(sinks, t))) | set(range(max(t - window, 0), t))
    return len(kept)


@st.composite
def prefill_case(draw):
    period = draw(st.sampled_from([1, 2, 4]))
    windows = tuple(64 * draw(st.integers(1, 4)) for _ in range(period))
    n = draw(st.integers(max(windows), 600))
    wl = Workload.sequence(n, heads=period * draw(st.integers(1, 2)), batch=draw(st.integers(1, 2)),
                           head_dim=draw(st.sampled_from([32, 64])), v_head_dim=draw(st.sampled_from([32, 128])))
    return wl, MoA(windows, sinks=64 * draw(st.integers(0, 2)))


@settings(max_examples=60)
@given(prefill_case())
def test_prefill_counts_equal_the_block_kernel_masks(case):
    wl, p = case
    per_head = [int(prefill_mask(wl.q_len, w, p.sinks).sum()) for w in p.head_windows(wl)]
    c = count(wl, p)
    assert c.pairs_per_head == sum(per_head) // wl.q_heads
    assert c.flops.matmul == 2 * wl.batch * sum(per_head) * (wl.qk_head_dim + wl.v_head_dim)
    assert c.flops.exp == wl.batch * sum(per_head)
    e = wl.element_bytes
    assert c.bytes.compulsory == wl.batch * wl.q_heads * wl.q_len * (2 * wl.qk_head_dim + 2 * wl.v_head_dim) * e


@settings(max_examples=100)
@given(st.integers(1, 300), st.integers(1, 4), st.lists(st.integers(1, 120), min_size=1, max_size=3),
       st.integers(0, 8))
def test_decode_counts_equal_the_circular_cache(kv, new, windows, sinks):
    new, windows = min(new, kv), [min(w, kv) for w in windows]
    wl = Workload.sequence(kv, phase="decode", decode_tokens=new, heads=len(windows))
    p = MoA(tuple(windows), sinks=sinks)
    per_head = [sum(decode_keys(t, w, sinks) for t in range(kv - new + 1, kv + 1)) for w in windows]
    c = count(wl, p)
    assert c.flops.exp == sum(per_head)
    assert c.flops.matmul == 2 * sum(per_head) * (wl.qk_head_dim + wl.v_head_dim)
    # every head reads its own sinks + window union once (MHA: one KV head per query head)
    touched = [len(set().union(*(set(range(min(sinks, t))) | set(range(max(t - w, 0), t))
                                 for t in range(kv - new + 1, kv + 1)))) for w in windows]
    kv_bytes = sum(touched) * (wl.qk_head_dim + wl.v_head_dim) * wl.element_bytes
    q_o = len(windows) * new * (wl.qk_head_dim * wl.element_bytes + wl.v_head_dim * wl.output_bytes)
    assert c.bytes.compulsory == kv_bytes + q_o


@settings(max_examples=80)
@given(prefill_case(), st.booleans(), st.integers(1, 3))
def test_closed_forms_equal_exact_counts(case, decode, new):
    wl, p = case
    if decode:
        wl = Workload.sequence(wl.q_len, phase="decode", decode_tokens=new, heads=wl.q_heads, batch=wl.batch)
    got, exact = evaluate(formula(p, wl.phase), wl, p), count(wl, p)
    assert got["pairs_per_head"] == pytest.approx(sum(p.window_pairs(wl, w) for w in p.windows) / len(p.windows))
    assert got["matmul_flops"] == pytest.approx(exact.flops.matmul, rel=1e-12)
    assert got["exp"] == pytest.approx(exact.flops.exp, rel=1e-12)
    assert got["compulsory_bytes"] == pytest.approx(exact.bytes.compulsory, rel=1e-12)


def test_elastic_windows_follow_moa_cache_rule():
    # cache = ceil(max(min(int(alpha + beta N), N), 128) / 64) * 64; window = cache - 64 sinks
    # 0 + 0.625 * 17408 = 10880 = 170 * 64 -> window 10816; -1024 + 1000 < 128 -> cache 128 -> 64;
    # 100 + 0.5 * 1000 = 600 -> ceil(600 / 64) * 64 = 640 -> 576
    assert elastic_windows([0, -1024, 100], [0.625, 1.0, 0.5], 17408)[0] == 10816
    assert elastic_windows([-1024, 100], [1.0, 0.5], 1000) == (64, 576)


def test_non_integer_mean_is_stated_exactly():
    wl = Workload.sequence(256, phase="decode", heads=2)
    p = MoA((64, 65), sinks=0)  # 64 + 65 keys over 2 heads: mean 64.5
    c = count(wl, p)
    assert c.pairs_per_head == 64 and any("exactly 129 pairs" in a for a in c.assumptions)


def test_windows_flag_parses_and_repeats_over_heads():
    p = build_pattern({"pattern": "moa", "windows": "1024,2048", "sinks": None})
    assert p == MoA((1024, 2048), sinks=64)
    assert p.head_windows(Workload.sequence(4096, heads=4)) == (1024, 2048, 1024, 2048)


@pytest.mark.parametrize("flags,wl,match", [
    (dict(windows="1024,2048,4096"), Workload.sequence(8192, heads=8), "--windows has 3 entries for 8 heads"),
    (dict(windows="1000"), Workload.sequence(8192, heads=8), "multiples of 64"),
    (dict(windows="1024"), Workload.sequence(8192, heads=8, kv_heads=2), "--kv-heads"),
    (dict(windows="1024"), Workload.sequence(8192, heads=8, phase="bwd"), "--phase bwd"),
    (dict(windows="1024,x"), Workload.sequence(8192, heads=8), "--windows '1024,x'"),
    (dict(windows="16384"), Workload.sequence(8192, heads=8), "exceeds the 8192 keys"),
])
def test_bad_parameters_name_the_flag(flags, wl, match):
    with pytest.raises(PatternError, match=match):
        count(wl, build_pattern({"pattern": "moa", "sinks": None, **flags}))


def test_missing_windows_is_refused():
    with pytest.raises(PatternError, match="needs --windows"):
        build_pattern({"pattern": "moa"})
