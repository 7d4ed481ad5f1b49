"""Every sympy closed form, lambdified, equals attnsim's exact count on random workloads."""
from functools import lru_cache

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.formulas import evaluate, formula, has_closed_form_hook
from attnsim.patterns import MLA, Agent, Causal, Dense, Hyper, Linear, MoBA, Neighborhood, Sliding

from .forms import assert_forms_match

PHASES = ["fwd", "decode", "bwd", "fwd+bwd"]


def representative(p, rank):
    """The instance `attnsim formula` builds: a form depends on the kind, never on parameter values."""
    if has_closed_form_hook(type(p)):
        return type(p).symbolic(getattr(p, "causal", False), rank)
    if isinstance(p, (Dense, Causal)):
        return p
    if isinstance(p, Sliding):
        return Sliding(1, causal=p.causal)
    if isinstance(p, Neighborhood):
        return Neighborhood((1,) * rank)
    if isinstance(p, MLA):
        return MLA(causal=p.causal, mode=p.mode)
    return Linear(causal=p.causal)


@lru_cache(maxsize=None)
def cached_formula(rep, phase, rank):
    return formula(rep, phase, rank)


def assert_forms_equal_counts(wl, pattern):
    rank = len(wl.q_grid)
    got = evaluate(cached_formula(representative(pattern, rank), wl.phase, rank), wl, pattern)
    return assert_forms_match(got, count(wl, pattern))


@st.composite
def shapes(draw):
    kv_heads = draw(st.sampled_from([1, 2, 4]))
    return dict(batch=draw(st.integers(1, 4)), head_dim=draw(st.sampled_from([64, 128, 192])),
                v_head_dim=draw(st.sampled_from([64, 128])), dtype=draw(st.sampled_from(["bf16", "fp8", "fp32"])),
                heads=kv_heads * draw(st.integers(1, 4)), kv_heads=kv_heads)


@st.composite
def case(draw):
    phase = draw(st.sampled_from(PHASES))
    kind = draw(st.sampled_from(["dense", "causal", "sliding", "sliding-causal", "neighborhood"]))
    common = draw(shapes())
    if kind == "neighborhood":
        grid = tuple(draw(st.integers(2, 12)) for _ in range(draw(st.integers(1, 3))))
        wl = Workload.on_grid(grid, phase="fwd" if phase == "decode" else phase, **common)
        windows = tuple(draw(st.integers(1, g)) for g in grid)
        return wl, Neighborhood(windows, stride=tuple(draw(st.integers(1, k)) for k in windows))
    n = draw(st.integers(1, 300))
    kv = n + (draw(st.integers(0, 300)) if kind in ("dense", "causal") else 0)
    if phase == "decode" and kind in ("dense", "causal"):
        wl = Workload.sequence(kv, phase="decode", decode_tokens=min(n, kv), **common)
    else:
        wl = Workload.sequence(n, kv_len=kv, phase="fwd" if phase == "decode" else phase, **common)
    w = draw(st.integers(1, wl.q_len))
    return wl, {"dense": Dense(), "causal": Causal(), "sliding": Sliding(w),
                "sliding-causal": Sliding(w, causal=True)}[kind]


@settings(max_examples=300)
@given(case())
def test_closed_forms_equal_exact_counts(c):
    assert_forms_equal_counts(*c)


@settings(max_examples=200)
@given(shapes(), st.sampled_from(PHASES), st.integers(1, 300), st.integers(0, 300), st.integers(8, 64),
       st.integers(0, 32), st.booleans(), st.sampled_from(["auto", "up-project", "absorbed"]))
def test_mla_closed_forms(common, phase, n, extra, rank, rope, causal, mode):
    if phase in ("bwd", "fwd+bwd") and mode == "absorbed":
        mode = "up-project"  # training runs the up-projection (absorbed is refused, tested below)
    common["head_dim"] = max(common["head_dim"], rope + 1)
    if phase == "decode":
        wl = Workload.sequence(n + extra, phase="decode", decode_tokens=n, **common)
    else:
        wl = Workload.sequence(n, kv_len=n + extra, phase=phase, **common)
    assert_forms_equal_counts(wl, MLA(kv_lora_rank=rank, rope_dim=rope, causal=causal, mode=mode))


@settings(max_examples=200)
@given(shapes(), st.sampled_from(PHASES), st.integers(1, 300), st.integers(0, 300), st.integers(1, 64),
       st.booleans())
def test_linear_closed_forms(common, phase, n, extra, chunk, causal):
    if phase == "decode":
        wl = Workload.sequence(n + extra, phase="decode", decode_tokens=n, **common)
    else:
        wl = Workload.sequence(n, phase=phase, **common)
    assert_forms_equal_counts(wl, Linear(chunk=chunk, causal=causal))


@settings(max_examples=200)
@given(shapes(), st.sampled_from(PHASES), st.booleans(), st.integers(1, 64), st.integers(1, 40), st.data())
def test_moba_closed_forms(common, phase, causal, block, blocks, data):
    if not causal:  # non-causal: self-attention over whole blocks, no decode
        phase = "fwd" if phase == "decode" else phase
        m = n = block * blocks
    else:
        m = data.draw(st.integers(1, block * blocks))
        n = data.draw(st.integers(1, m)) if phase == "decode" else m
    top_k = data.draw(st.integers(1, -(-m // block)))
    if phase == "decode":
        wl = Workload.sequence(m, phase="decode", decode_tokens=n, **common)
    else:
        wl = Workload.sequence(n, phase=phase, **common)
    p = MoBA(block, top_k, causal)
    got = assert_forms_equal_counts(wl, p)
    assert got["gate_scores_per_head"] == pytest.approx(p.candidate_blocks_per_head(wl), rel=1e-12)


@settings(max_examples=200)
@given(shapes(), st.sampled_from(["fwd", "bwd", "fwd+bwd"]), st.integers(1, 500), st.integers(1, 500),
       st.data())
def test_agent_closed_forms(common, phase, n, m, data):
    wl = Workload.sequence(n, kv_len=m, phase=phase, **common)
    assert_forms_equal_counts(wl, Agent(data.draw(st.integers(1, n))))


@st.composite
def hyper_case(draw):
    """A sequence the recursion accepts. The repo splits a causal segment longer than mu and runs
    its lower-left quarter as HyperAttention when that quarter has >= mu queries (n >= 2 mu - 1):
    N = 2^L m with m in [mu, 2 mu - 2] a multiple of the block (L >= 1: every HyperAttention half
    is whole blocks), or any N <= 2 mu - 2 (L = 0: exact). Non-causal: exact below mu queries."""
    block = draw(st.sampled_from([1, 2, 4, 8, 16]))
    mu = draw(st.integers(block, 128))
    causal, levels = draw(st.booleans()), draw(st.integers(0, 5))
    first_block = -(-mu // block)  # smallest j with j * block >= mu
    if not causal:
        exact = st.integers(1, mu - 1) if mu > 1 else st.nothing()
        n = draw(st.one_of(exact, st.integers(first_block, 4 * first_block).map(lambda j: j * block)))
        samples = draw(st.integers(1, 2 * n))
    elif levels == 0:
        n, samples = draw(st.integers(1, max(1, 2 * mu - 2))), draw(st.integers(1, mu))
    else:
        assume(first_block * block <= 2 * mu - 2)
        m = block * draw(st.integers(first_block, (2 * mu - 2) // block))
        n, samples = m * 2**levels, draw(st.integers(1, mu))
    return n, Hyper(block, samples, mu, draw(st.integers(1, 8)), causal=causal)


@settings(max_examples=200)
@given(shapes(), st.sampled_from(["fwd", "bwd", "fwd+bwd"]), hyper_case())
def test_hyper_closed_forms(common, phase, c):
    n, p = c
    wl = Workload.sequence(n, phase=phase, **common)
    got = assert_forms_equal_counts(wl, p)
    assert got["lsh_rows_per_head"] == pytest.approx(p._work(n)[1], rel=1e-12)


def test_hyper_levels_by_hand():
    # 131072 tokens, min_seq_len 4096: segments 131072 ... 8192 split with quarters of 65536 ... 4096
    # queries, all >= 4096, so HyperAttention (L = 5); the 4096 segments are exact causal.
    # pairs = N/2 (N / 2^5 + 1 + 5 (256 + 256)) = 65536 * 6657.
    wl = Workload.sequence(131072, phase="bwd")
    assert Hyper().levels(131072) == 5
    assert evaluate(formula(Hyper(), "bwd"), wl, Hyper())["pairs_per_head"] == 65536 * 6657


def test_unsupported_phases_raise():
    with pytest.raises(PatternError, match="--mla-mode absorbed is the inference formulation"):
        formula(MLA(mode="absorbed"), "bwd")
    with pytest.raises(PatternError, match="no decode"):
        formula(Agent(), "decode")
    with pytest.raises(PatternError, match="no decode"):
        formula(Hyper(), "decode")


def test_causal_neighborhood_has_no_closed_form_and_says_why():
    with pytest.raises(PatternError, match="no closed form"):
        formula(Neighborhood((3, 3), causal=(True, False)), rank=2)


def test_dense_forward_is_the_textbook_formula():
    import sympy as sp

    f = formula(Dense())
    B, H, N, M, D, Dv = sp.symbols("B H N M D Dv", positive=True, integer=True)
    assert sp.simplify(f.exprs["matmul_flops"] - 2 * B * H * N * M * (D + Dv)) == 0


def test_moba_prefill_form_by_hand():
    # causal prefill, N = M = 10, blocks of 4, top-2: queries 0-3 see 1..4 keys of their own block;
    # queries 4-7 their own block up to themselves (1..4) + block 0 (4); queries 8-9 (1, 2) + one
    # history block (4 each): 10 + (10 + 16) + (3 + 8) = 47.
    wl = Workload.sequence(10)
    assert evaluate(formula(MoBA(4, 2, causal=True)), wl, MoBA(4, 2, causal=True))["pairs_per_head"] == 47


def test_formula_cli_json_and_bad_input(capsys):
    import json

    from attnsim.cli import main

    assert main(["formula", "causal", "--phase", "bwd", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["formulas"]["pairs_per_head"] == "N*(2*M - N + 1)/2" and "N <= M" in d["assumes"]
    assert main(["formula", "neighborhood", "--causal", "--rank", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no closed form" in err


@pytest.mark.parametrize("args,expect", [
    (["moba", "--causal", "--phase", "bwd"], "floor(M/bs)"),
    (["moba"], "N*bs*k"),
    (["agent", "--phase", "fwd+bwd"], "A*(M + N)"),
    (["hyper"], "N/2**L"),  # causal by default, as its --causal flag
    (["hyper", "--no-causal"], "Piecewise"),
    (["mla", "--phase", "fwd+bwd"], "bwd_decompress"),
])
def test_formula_cli_prints_the_new_forms(capsys, args, expect):
    from attnsim.cli import main

    assert main(["formula", *args, "--json"]) == 0
    assert expect in capsys.readouterr().out
