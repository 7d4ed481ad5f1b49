"""Token-selection patterns (HiP, Sparsifiner, DMA, TCA): counts from the parameters equal naive
implementations of each paper's selection rule run on random scores, which count their own
pairs, dot products, compares and reads; closed forms equal the exact counts."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.cli import main
from attnsim.errors import PatternError
from attnsim.formulas import formula
from attnsim.patterns import DMA, TCA, HiP, Sparsifiner
from attnsim.patterns.opgraph import ops_of

from .forms import assert_closed_form_equals_count


def op(wl, p, name):
    (found,) = [o for o in ops_of(p.op_graph(wl, p.pairs_per_head(wl))) if o.name == name]
    return found


# -- HiP: the tree search of the v1.1 draft kernel, on random scores ---------------------------
def hip_reference(wl, p, rng):
    """Per query block: pairs, scorer dot products, candidates, K and V keys read (one head)."""
    bk, bq, m, nq, nkv = p.block_size, p.query_block, p.top_k // p.block_size, wl.q_len, wl.kv_len
    scores = rng.standard_normal((nq, nkv))
    mask, dots, cands, read_k, read_v = np.zeros((nq, nkv), bool), 0, 0, [], []
    for start in range(0, nq, bq):
        rows = np.arange(start, min(start + bq, nq))
        first = start + nkv - nq
        prefix, lo = (first // bk, first // bk * bk) if p.causal else (nkv // bk, nkv)
        scorers = rows[::p.query_stride]
        reps = set()
        if prefix <= m:
            chosen = list(range(prefix))
            reps.update(chosen)
        else:
            groups = [(int(prefix / m * i), int(prefix / m * (i + 1)) - int(prefix / m * i)) for i in range(m)]
            size = prefix / m
            while size > 1:
                halves = [h for st_, sz in groups for h in ((st_, sz // 2), (st_ + sz // 2, sz - sz // 2))]
                value = [scores[np.ix_(scorers, range(b0 * bk, b0 * bk + bk))].max() if sz else -np.inf
                         for b0, sz in halves]
                reps.update(b0 for b0, sz in halves if sz)
                dots += len(halves) * len(scorers) * bk
                cands += len(halves)
                groups = [halves[i] for i in np.argsort(value, kind="stable")[::-1][:m]]
                size /= 2
            chosen = [b0 for b0, _ in groups]
            assert all(sz == 1 for _, sz in groups) and len(set(chosen)) == m
        keys = np.concatenate([np.arange(b0 * bk, b0 * bk + bk) for b0 in chosen] or [np.array([], int)])
        for r in rows:
            mask[r, keys] = True
            if p.causal:
                mask[r, lo:r + nkv - nq + 1] = True
        local = set(range(lo, rows[-1] + nkv - nq + 1)) if p.causal else set()
        read_k.append(local | {b0 * bk + i for b0 in reps for i in range(bk)})
        read_v.append(local | set(keys.tolist()))
    return mask, dots, cands, read_k, read_v


@st.composite
def hip_case(draw):
    bk, m = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    causal = draw(st.booleans())
    nkv = draw(st.integers(m * bk, 70)) if causal else bk * draw(st.integers(m, 24))
    nq = draw(st.integers(1, nkv)) if causal else draw(st.integers(1, 20))
    p = HiP(top_k=m * bk, block_size=bk, query_block=draw(st.integers(1, 7)),
            query_stride=draw(st.integers(1, 2)), causal=causal)
    return Workload.sequence(nq, kv_len=nkv), p


@settings(max_examples=250)
@given(hip_case(), st.integers(0, 2**32 - 1))
def test_hip_counts_equal_the_tree_search_on_random_scores(case, seed):
    wl, p = case
    mask, dots, cands, read_k, read_v = hip_reference(wl, p, np.random.default_rng(seed))
    c = count(wl, p)
    assert c.pairs_per_head == mask.sum()
    assert c.flops.by_op["tree_score"] == 2 * dots * wl.qk_head_dim
    assert op(wl, p, "tree_top_k").other_flops == cands
    # keys read: never fewer than the search reads; one query block of one head reads exactly
    # its recent keys, chosen values, and (when every split halves a group) m (n + 1) blocks
    sums = p.exact_sums(wl)
    assert len(set().union(*read_k)) <= c.touched_keys and len(set().union(*read_v)) <= sums["v_keys"]
    if len(read_k) == 1:
        assert len(read_v[0]) == sums["v_keys"]
        m, prefix = p.top_k // p.block_size, (wl.kv_len - wl.q_len if p.causal else wl.kv_len) // p.block_size
        if prefix <= m or (prefix % m == 0 and (prefix // m) & (prefix // m - 1) == 0):
            assert len(read_k[0]) == c.touched_keys


def test_hip_paper_setting_is_subquadratic():
    # k = 512, b_q = 32, b_k = 2 (hip_attention defaults); 128K causal prefill, Llama-3.1-8B heads
    n = 131072
    wl = Workload.sequence(n, heads=32, kv_heads=8)
    c, sums = count(wl, HiP()), HiP().exact_sums(wl)
    # query block j has j * 32 / 2 whole key blocks before it; 256 are kept, log2(blocks / 256) rounds
    iterations = sum(math.ceil(math.log2(16 * j / 256)) for j in range(n // 32) if 16 * j > 256)
    assert sums["iterations"] == iterations
    assert c.flops.by_op["tree_score"] == 2 * 32 * (2 * 256 * iterations * 16 * 2) * 128
    dense_causal = n * (n + 1) // 2
    assert c.pairs_per_head < n * (512 + 32) and c.pairs_per_head / dense_causal < 0.01


# -- Sparsifiner: the MaskPredictor of the reference code, with a FLOP tally -------------------
def sparsifiner_reference(wl, p, rng):
    n, d, dv = wl.q_len, wl.qk_head_dim, wl.v_head_dim
    rank, k = p.resolved(wl)
    c, group = d // 2, wl.q_heads // wl.kv_heads
    tally = {"matmul": 0, "exp": 0, "pairs": 0}

    def mm(a, b):
        tally["matmul"] += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    w_q, w_k, proj_n, basis = (rng.standard_normal(s) for s in ((d, c), (d, c), (n, rank), (rank, n)))
    for _ in range(wl.batch):
        for _kv in range(wl.kv_heads):
            k_down = mm(mm(rng.standard_normal((n, d)), w_k).T, proj_n)            # [c, rank]
            for _h in range(group):
                cheap = mm(mm(rng.standard_normal((n, d)), w_q), k_down)[1:]      # class token dropped
                coef = np.exp(cheap - cheap.max(axis=1, keepdims=True))
                tally["exp"] += coef.size
                keep = np.zeros(coef.shape, bool)
                keep[np.arange(n - 1)[:, None], np.argsort(coef, axis=1)[:, -p.basis_top_k:]] = True
                coef[~keep] = 0
                tally["matmul"] += 2 * keep.sum() * n                              # sparse coef @ basis
                approx = coef @ basis
                mask = np.zeros((n, n), bool)
                mask[0] = True
                mask[1 + np.arange(n - 1)[:, None], np.argsort(approx, axis=1)[:, -k:]] = True
                tally["pairs"] += mask.sum()
                tally["matmul"] += 2 * mask.sum() * (d + dv)
    return tally


@settings(max_examples=60)
@given(st.integers(9, 40), st.sampled_from([(1, 1), (2, 1), (4, 2)]), st.integers(1, 2),
       st.data(), st.integers(0, 2**32 - 1))
def test_sparsifiner_counts_equal_the_mask_predictor(n, heads, batch, data, seed):
    p = Sparsifiner(rank=data.draw(st.integers(8, n)), top_k=data.draw(st.integers(1, n)))
    wl = Workload.sequence(n, heads=heads[0], kv_heads=heads[1], batch=batch, head_dim=8, v_head_dim=4)
    ref = sparsifiner_reference(wl, p, np.random.default_rng(seed))
    c = count(wl, p)
    assert c.pairs_per_head * wl.heads_total == ref["pairs"]
    assert c.flops.matmul == ref["matmul"]
    assert c.flops.exp == ref["exp"] + ref["pairs"]  # predictor softmax + attention


def test_sparsifiner_defaults_follow_the_code_config():
    # DeiT-S at 224: 197 tokens, REDUCE_N_FACTOR 6 -> 32 reduced tokens, ATTN_KEEP_RATE 0.25 -> 50 keys
    wl = Workload.sequence(197, heads=6, head_dim=64)
    assert Sparsifiner().resolved(wl) == (32, 50)
    assert count(wl, Sparsifiner()).pairs_per_head == 197 + 196 * 50


def test_sparsifiner_backward_is_the_sparse_attention_only():
    wl = Workload.sequence(197, heads=6, head_dim=64, phase="bwd")
    c, pairs = count(wl, Sparsifiner()), 197 + 196 * 50
    assert c.flops.matmul == 6 * pairs * 2 * (3 * 64 + 2 * 64)  # 3 matmuls over D, 2 over Dv per pair


# -- DMA: value bias, causal mask, top-w per row ----------------------------------------------
@settings(max_examples=150)
@given(st.integers(1, 40), st.integers(0, 30), st.integers(1, 50), st.booleans(), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_dma_counts_equal_top_w_of_the_masked_bias(nq, extra, w, causal, decode, seed):
    rng = np.random.default_rng(seed)
    nkv = nq + extra
    wl = (Workload.sequence(nkv, phase="decode", decode_tokens=nq, heads=4, kv_heads=2, head_dim=8, v_head_dim=16)
          if decode else Workload.sequence(nq, kv_len=nkv, heads=4, kv_heads=2, head_dim=8, v_head_dim=16))
    p = DMA(top_k=w, causal=causal)
    zoh = rng.standard_normal(nkv)  # one kv head's bias, broadcast over its queries
    bias = np.tile(zoh, (nq, 1))
    if causal:
        bias[np.arange(nkv)[None, :] > (np.arange(nq) + nkv - nq)[:, None]] = -np.inf
    mask = np.zeros_like(bias, bool)
    for i, row in enumerate(bias):
        keep = np.argsort(row)[::-1][:w]
        mask[i, keep[np.isfinite(row[keep])]] = True
    c = count(wl, p)
    assert c.pairs_per_head == mask.sum()
    assert c.flops.by_op["zoh"] == wl.batch * nkv * 2 * (2 * 16) * 2   # per key: (Hkv*Dv) -> Hkv
    assert op(wl, p, "mask_top_k").other_flops == 2 * nq * nkv          # every key compared, per kv head
    assert c.touched_keys == min(nkv, nq * w) >= mask.any(axis=0).sum()


def test_dma_training_adds_the_bias_gradient():
    wl = Workload.sequence(4096, heads=2, kv_heads=1, head_dim=128, phase="fwd+bwd")
    c, pairs = count(wl, DMA(top_k=1024)), 1024 * 1025 // 2 + (4096 - 1024) * 1024
    attention = 2 * 2 * pairs * 128 * 2            # QK^T and PV, 2 heads
    zoh = 2 * 4096 * 1 * 128                        # dt_proj: 128 value channels -> 1 per key
    assert c.flops.matmul == attention * 3.5 + zoh * 3  # fwd + 2.5x bwd; dt_proj fwd + dgrad + wgrad


# -- TCA: complete older blocks keep k_b tokens, recent keys stay exact -----------------------
@settings(max_examples=200)
@given(st.integers(1, 12), st.data(), st.integers(0, 20), st.integers(1, 60), st.integers(0, 40),
       st.sampled_from([(1, 1), (2, 1), (3, 3)]), st.integers(0, 2**32 - 1))
def test_tca_counts_equal_blockwise_selection(b, data, window, nq, extra, heads, seed):
    rng = np.random.default_rng(seed)
    kb = data.draw(st.integers(1, b))
    nkv, group = nq + extra, heads[0] // heads[1]
    wl = Workload.sequence(nq, kv_len=nkv, heads=heads[0], kv_heads=heads[1], head_dim=8)
    p = TCA(keep_fraction=kb / b, block_size=b, window=window)

    def complete(visible):
        return max(visible - window, 0) // b

    reads, mask = set(), None
    for _ in range(group):  # each query head of the kv head picks its own tokens
        kept = [rng.choice(np.arange(i * b, i * b + b), kb, replace=False) for i in range(complete(nkv))]
        mask = np.zeros((nq, nkv), bool)
        for i in range(nq):
            visible = nkv - nq + i + 1
            mask[i, b * complete(visible):visible] = True
            for blk in kept[:complete(visible)]:
                mask[i, blk] = True
        reads |= set(np.flatnonzero(mask.any(axis=0)))
    new = complete(nkv) - complete(nkv - nq)
    reads |= set(range(b * (complete(nkv) - new), b * complete(nkv)))  # blocks scored in this call
    c = count(wl, p)
    assert c.pairs_per_head == mask.sum()
    assert c.flops.by_op.get("block_score", 0) == 2 * wl.q_heads * new * b * 8
    assert len(reads) <= c.touched_keys and (group > 1 or len(reads) == c.touched_keys)


def test_tca_decode_selects_only_when_a_block_completes():
    p = TCA(keep_fraction=0.25, block_size=16, window=1024)
    done = count(Workload.sequence(1024 + 16 * 10, phase="decode"), p)
    idle = count(Workload.sequence(1024 + 16 * 10 + 1, phase="decode"), p)
    assert done.kernels == ("select", "attention") and idle.kernels == ("attention",)
    assert idle.pairs_per_head == 4 * 10 + 1024 + 1  # 10 blocks x 4 kept + window + the new key


# -- closed forms ------------------------------------------------------------------------------
@st.composite
def closed_case(draw):
    kind = draw(st.sampled_from(["hip", "hip-nc", "hip-decode", "sparsifiner", "dma", "tca"]))
    kv = draw(st.sampled_from([1, 2]))
    common = dict(heads=kv * draw(st.integers(1, 3)), kv_heads=kv, batch=draw(st.integers(1, 2)),
                  head_dim=draw(st.sampled_from([8, 64])), v_head_dim=draw(st.sampled_from([8, 32])),
                  dtype=draw(st.sampled_from(["bf16", "fp8"])))
    if kind == "hip":
        bk = draw(st.integers(1, 3))
        bq = bk * draw(st.integers(1, 3)) * draw(st.sampled_from([1, 2]))
        blocks = draw(st.integers(2, 12))
        k = bq * draw(st.integers(1, blocks - 1))
        stride = draw(st.sampled_from([1, 2])) if bq % 2 == 0 else 1
        return Workload.sequence(bq * blocks, **common), HiP(k, bk, bq, stride)
    if kind == "hip-nc":
        bk, bq = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        nkv = bk * draw(st.integers(1, 30))
        k = bk * draw(st.integers(1, nkv // bk))
        return Workload.sequence(bq * draw(st.integers(1, 5)), kv_len=nkv, **common), HiP(k, bk, bq, 1, causal=False)
    if kind == "hip-decode":
        bk = draw(st.integers(1, 3))
        k = bk * draw(st.integers(1, 4))
        nkv = draw(st.integers(k + bk + 1, 120))
        return Workload.sequence(nkv, phase="decode", **common), HiP(k, bk, draw(st.integers(1, 8)))
    if kind == "sparsifiner":
        n = draw(st.integers(8, 80))
        return (Workload.sequence(n, phase=draw(st.sampled_from(["fwd", "bwd", "fwd+bwd"])), **common),
                Sparsifiner(rank=draw(st.integers(8, n)), top_k=draw(st.integers(1, n))))
    n = draw(st.integers(1, 90))
    phase = draw(st.sampled_from(["fwd", "decode", "bwd", "fwd+bwd"] if kind == "dma" else ["fwd", "decode"]))
    if phase == "decode":
        wl = Workload.sequence(n + draw(st.integers(3, 60)), phase="decode", decode_tokens=draw(st.integers(1, 3)),
                               **common)
    else:
        wl = Workload.sequence(n, kv_len=n + draw(st.integers(0, 60)), phase=phase, **common)
    if kind == "dma":
        return wl, DMA(top_k=draw(st.integers(1, 100)), causal=draw(st.booleans()))
    b = draw(st.integers(1, 9))
    return wl, TCA(keep_fraction=draw(st.integers(1, b)) / b, block_size=b, window=draw(st.integers(0, 40)))


@settings(max_examples=300)
@given(closed_case())
def test_closed_forms_equal_exact_counts(case):
    wl, p = case
    assert_closed_form_equals_count(wl, p, wl.phase)


# -- errors and the CLI ----------------------------------------------------------------------
@pytest.mark.parametrize("pattern,wl,match", [
    (HiP(top_k=5, block_size=2), Workload.sequence(64), "--top-k 5 must be a multiple of --block-size 2"),
    (HiP(top_k=128), Workload.sequence(64), "--top-k 128 exceeds the 64 keys"),
    (HiP(top_k=6, block_size=3, causal=False), Workload.sequence(64), "--block-size 3 must divide"),
    (HiP(query_block=0), Workload.sequence(4096), "--query-block must be a positive integer"),
    (HiP(), Workload.sequence(4096, phase="bwd"), "training-free"),
    (Sparsifiner(rank=4), Workload.sequence(197), "--rank 4 must be between 8"),
    (Sparsifiner(rank=-1), Workload.sequence(197), "--rank -1"),
    (Sparsifiner(top_k=300), Workload.sequence(197), "--top-k 300 must be between 1 and the 197"),
    (Sparsifiner(), Workload.sequence(16, kv_len=32), "self-attention"),
    (DMA(top_k=0), Workload.sequence(64), "--top-k must be a positive integer"),
    (TCA(keep_fraction=0.3), Workload.sequence(4096), "whole number >= 1 of tokens kept per block"),
    (TCA(keep_fraction=1.5), Workload.sequence(4096), "--keep-fraction must be in"),
    (TCA(keep_fraction=0.5), Workload.sequence(4096, phase="fwd+bwd"), "training-free"),
    (TCA(keep_fraction=0.5), Workload.on_grid((8, 8)), "1D sequences"),
])
def test_bad_parameters_name_the_flag(pattern, wl, match):
    with pytest.raises(PatternError, match=match):
        count(wl, pattern)


def test_training_free_patterns_have_no_backward_formula():
    for p in (HiP(), TCA(keep_fraction=0.25)):
        with pytest.raises(PatternError, match="training-free"):
            formula(p, "fwd+bwd")


def test_cli_builds_each_pattern_from_its_flags(capsys):
    for argv in (["--pattern", "hip", "--top-k", "512", "--block-size", "2", "--query-block", "32"],
                 ["--pattern", "sparsifiner", "--rank", "32", "--top-k", "50", "--seq", "197", "--head-dim", "64"],
                 ["--pattern", "dma", "--top-k", "1024"],
                 ["--pattern", "tca", "--keep-fraction", "0.25", "--block-size", "16", "--window", "1024"]):
        seq = [] if "--seq" in argv else ["--seq", "8192"]
        assert main(["predict", *argv, *seq, "--json"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["predict", "--pattern", "tca", "--seq", "8192"]) == 2
    assert "needs --keep-fraction" in capsys.readouterr().err
