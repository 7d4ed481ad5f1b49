"""Dense and causal counts equal the textbook formulas at realistic sizes."""
import pytest

from attnsim import Workload, count
from attnsim.patterns import Causal, Dense, Sliding


@pytest.mark.parametrize("b,h,n,d", [(1, 32, 8192, 128), (4, 16, 4096, 64), (2, 8, 131072, 128)])
def test_dense_forward_flops_are_4BHN2D(b, h, n, d):
    c = count(Workload.sequence(n, batch=b, heads=h, head_dim=d), Dense())
    assert c.flops.matmul == 4 * b * h * n * n * d
    assert c.flops.qk == c.flops.pv == 2 * b * h * n * n * d
    assert c.flops.exp == b * h * n * n


@pytest.mark.parametrize("n", [1, 2, 1000, 4097, 131072])
def test_causal_pairs_are_n_n_plus_1_over_2(n):
    assert count(Workload.sequence(n), Causal()).pairs_per_head == n * (n + 1) // 2


def test_backward_is_two_and_a_half_forward_matmuls():
    wl = Workload.sequence(4096, heads=8, head_dim=128)
    fwd = count(wl, Dense()).flops.matmul
    assert count(wl.with_(phase="bwd"), Dense()).flops.matmul * 2 == 5 * fwd
    assert count(wl.with_(phase="fwd+bwd"), Dense()).flops.matmul * 2 == 7 * fwd


def test_causal_sliding_window_pairs():
    # Interior queries see w keys, the first w-1 see 1..w-1: w(w-1)/2 + (n-w+1)w.
    n, w = 10000, 512
    assert count(Workload.sequence(n), Sliding(w, causal=True)).pairs_per_head == (
        w * (w - 1) // 2 + (n - w + 1) * w)


def test_decode_reads_the_whole_cache_once():
    wl = Workload.sequence(131072, heads=64, kv_heads=8, head_dim=128, phase="decode", batch=2)
    c = count(wl, Causal())
    assert (wl.q_len, wl.kv_len) == (1, 131072)
    assert c.pairs_per_head == 131072  # bottom-right: the new token sees the whole cache
    kv_bytes = 2 * 2 * 8 * 131072 * 128 * 2  # batch, kv heads, tokens, dim, bf16; K and V
    assert c.bytes.by_tensor["k"] + c.bytes.by_tensor["v"] == kv_bytes


def test_sliding_decode_reads_only_the_window():
    wl = Workload.sequence(131072, heads=8, head_dim=128, phase="decode")
    c = count(wl, Sliding(4096, causal=True))
    assert c.touched_keys == 4096
    assert c.bytes.by_tensor["k"] == 8 * 4096 * 128 * 2


def test_gqa_divides_kv_bytes_not_flops():
    mha = count(Workload.sequence(2048, heads=32, head_dim=128), Causal())
    gqa = count(Workload.sequence(2048, heads=32, kv_heads=4, head_dim=128), Causal())
    assert gqa.flops.matmul == mha.flops.matmul
    assert gqa.bytes.by_tensor["k"] * 8 == mha.bytes.by_tensor["k"]
