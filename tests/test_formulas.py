"""Every sympy closed form, lambdified, equals attnsim's exact count on random workloads."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.errors import PatternError
from attnsim.formulas import evaluate, formula
from attnsim.patterns import MLA, Causal, Dense, Linear, Neighborhood, Sliding


@st.composite
def case(draw):
    phase = draw(st.sampled_from(["fwd", "decode", "bwd", "fwd+bwd"]))
    kind = draw(st.sampled_from(["dense", "causal", "sliding", "sliding-causal", "neighborhood", "mla", "linear"]))
    common = dict(batch=draw(st.integers(1, 4)), head_dim=draw(st.sampled_from([64, 128, 192])),
                  v_head_dim=draw(st.sampled_from([64, 128])), dtype=draw(st.sampled_from(["bf16", "fp8", "fp32"])))
    kv_heads = draw(st.sampled_from([1, 2, 4]))
    heads = dict(heads=kv_heads * draw(st.integers(1, 4)), kv_heads=kv_heads)
    if kind in ("mla", "linear"):
        phase = draw(st.sampled_from(["fwd", "decode"]))
    if kind == "neighborhood":
        grid = tuple(draw(st.integers(2, 12)) for _ in range(draw(st.integers(1, 3))))
        wl = Workload.on_grid(grid, phase="fwd" if phase == "decode" else phase, **common, **heads)
        windows = tuple(draw(st.integers(1, g)) for g in grid)
        return wl, Neighborhood(windows, stride=tuple(draw(st.integers(1, k)) for k in windows))
    n = draw(st.integers(1, 300))
    kv = n + (draw(st.integers(0, 300)) if kind in ("dense", "causal", "mla") else 0)
    if kind == "linear" and phase == "decode":
        kv = n + draw(st.integers(0, 300))
    if phase == "decode" and kind not in ("sliding", "sliding-causal"):
        wl = Workload.sequence(kv, phase="decode", decode_tokens=min(n, kv), **common, **heads)
    else:
        wl = Workload.sequence(n, kv_len=kv, phase="fwd" if phase == "decode" else phase, **common, **heads)
    w = draw(st.integers(1, wl.q_len))
    return wl, {"dense": Dense(), "causal": Causal(), "sliding": Sliding(w), "sliding-causal": Sliding(w, causal=True),
                "mla": MLA(kv_lora_rank=draw(st.integers(8, 64)), rope_dim=draw(st.integers(0, 32)),
                           causal=draw(st.booleans())),
                "linear": Linear(chunk=draw(st.integers(1, 64)), causal=draw(st.booleans()))}[kind]


@settings(max_examples=300)
@given(case())
def test_closed_forms_equal_exact_counts(c):
    wl, pattern = c
    f = formula(pattern, wl.phase, rank=len(wl.q_grid))
    got = evaluate(f, wl, pattern)
    exact = count(wl, pattern)
    assert got["pairs_per_head"] == pytest.approx(exact.pairs_per_head, rel=1e-12)
    assert got["matmul_flops"] == pytest.approx(exact.flops.matmul, rel=1e-12)
    assert got["exp"] == pytest.approx(exact.flops.exp, rel=1e-12)
    assert got["compulsory_bytes"] == pytest.approx(exact.bytes.compulsory, rel=1e-12)


def test_causal_neighborhood_has_no_closed_form_and_says_why():
    with pytest.raises(PatternError, match="no closed form"):
        formula(Neighborhood((3, 3), causal=(True, False)), rank=2)


def test_dense_forward_is_the_textbook_formula():
    import sympy as sp

    f = formula(Dense())
    B, H, N, M, D, Dv = sp.symbols("B H N M D Dv", positive=True, integer=True)
    assert sp.simplify(f.exprs["matmul_flops"] - 2 * B * H * N * M * (D + Dv)) == 0


def test_formula_cli_json_and_bad_input(capsys):
    import json

    from attnsim.cli import main

    assert main(["formula", "causal", "--phase", "bwd", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["formulas"]["pairs_per_head"] == "N*(2*M - N + 1)/2" and "N <= M" in d["assumes"]
    assert main(["formula", "neighborhood", "--causal", "--rank", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no closed form" in err
