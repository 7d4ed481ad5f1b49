"""Closed forms (``closed_form`` hooks) of sinks, power, graph, sliding-tile, swin and halo:
lambdified, they equal attnsim's exact counts and the materialised masks on random small
workloads in every phase; and every registered pattern has a form or a stated reason not to."""
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import Workload, count
from attnsim.cli import main
from attnsim.errors import PatternError
from attnsim.formulas import PHASES, evaluate, formula, has_closed_form_hook
from attnsim.patterns import REGISTRY, Graph, Halo, Power, Sinks, SlidingTile, Swin

from .test_blocked import swin_reference
from .test_sliding_tile import sta_mask

HOOKED = ("sinks", "power", "graph", "sliding-tile", "swin", "halo")
QUANTITIES = ("pairs_per_head", "matmul_flops", "exp", "compulsory_bytes")

# Registered patterns that have no closed form, and why (checked by the registry test below).
# Variants without a form are refused by attnsim.formulas itself: causal neighborhood windows
# are clipped per dilation group (and stride group), so attnsim counts them exactly but has no
# formula.
NO_CLOSED_FORM: dict[str, str] = {}


def _common(draw) -> dict:
    kv_heads = draw(st.sampled_from([1, 2, 4]))
    return dict(batch=draw(st.integers(1, 3)), heads=kv_heads * draw(st.integers(1, 3)), kv_heads=kv_heads,
                head_dim=draw(st.sampled_from([16, 64, 128])), v_head_dim=draw(st.sampled_from([16, 64])),
                dtype=draw(st.sampled_from(["bf16", "fp8", "fp32"])))


def _sequence(draw, n: int, kv: int, phase: str) -> Workload:
    """A 1D workload; decode keeps ``kv`` cached keys and ``n`` new queries."""
    if phase == "decode":
        return Workload.sequence(kv, phase="decode", decode_tokens=n, **_common(draw))
    return Workload.sequence(n, kv_len=kv, phase=phase, **_common(draw))


def _grid(draw, grid: tuple, phase: str) -> Workload:
    """Grid patterns in decode: a 1D cache of the same length (decode has no grid)."""
    if phase == "decode":
        return Workload.sequence(grid[0], phase="decode", decode_tokens=grid[0], **_common(draw))
    return Workload.on_grid(grid, phase=phase, **_common(draw))


def sinks_case(draw, phase):
    kv = draw(st.integers(1, 60))
    n = draw(st.integers(1, kv + 10))  # N > M too: early queries then see nothing (bottom-right)
    return _sequence(draw, n, kv, phase), Sinks(window=draw(st.integers(1, kv)), sinks=draw(st.integers(0, 12)))


def power_case(draw, phase):
    n = draw(st.integers(1, 120))
    return _sequence(draw, n, n, phase), Power(draw(st.integers(1, 9)), draw(st.integers(1, 6)),
                                              draw(st.integers(0, 4)))


def graph_case(draw, phase):
    n, kv = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, kv - 1)), min_size=1, max_size=80))
    return _sequence(draw, n, kv, phase), Graph(np.array(pairs, dtype=np.int64))


def sliding_tile_case(draw, phase):
    rank = 1 if phase == "decode" else draw(st.integers(1, 3))
    tile = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    tiles = tuple(draw(st.integers(1, 5 if rank < 3 else 3)) for _ in range(rank))
    window = tuple(draw(st.sampled_from([w for w in (1, 3, 5) if w <= n])) for n in tiles)
    grid = tuple(t * n for t, n in zip(tile, tiles))
    return _grid(draw, grid, phase), SlidingTile.of(tile, window)


def swin_case(draw, phase):
    rank = 1 if phase == "decode" else draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    grid = tuple(w * draw(st.integers(1, 3 if rank == 3 else 4)) for w in window)
    return _grid(draw, grid, phase), Swin(window, tuple(draw(st.integers(0, w - 1)) for w in window))


def halo_case(draw, phase):
    rank = 1 if phase == "decode" else draw(st.integers(1, 3))
    grid = tuple(draw(st.integers(1, 12 if rank < 3 else 5)) for _ in range(rank))
    block = tuple(draw(st.integers(1, n)) for n in grid)
    return _grid(draw, grid, phase), Halo(block, tuple(draw(st.integers(0, 6)) for _ in grid))


CASES = {"sinks": sinks_case, "power": power_case, "graph": graph_case, "sliding-tile": sliding_tile_case,
         "swin": swin_case, "halo": halo_case}


def reference_mask(wl: Workload, p) -> np.ndarray:
    """The brute-force mask, from the papers' own definitions where the tests have them."""
    if isinstance(p, SlidingTile):
        return sta_mask(wl.q_grid, p.tile, tuple(w // t for w, t in zip(p.window, p.tile)))
    if isinstance(p, Swin):
        return swin_reference(wl.q_grid, p.window, p.shift)
    return p.mask(wl)


@pytest.mark.parametrize("name", HOOKED)
@settings(max_examples=200)
@given(data=st.data())
def test_closed_form_equals_exact_count_and_mask(name, data):
    phase = data.draw(st.sampled_from(PHASES))
    wl, p = CASES[name](data.draw, phase)
    f = formula(p, phase, rank=len(wl.q_grid))
    got, exact, mask = evaluate(f, wl, p), count(wl, p), reference_mask(wl, p)
    assert got["pairs_per_head"] == exact.pairs_per_head == int(mask.sum())
    assert got["touched_keys"] == exact.touched_keys == int(mask.any(axis=0).sum())
    assert got["matmul_flops"] == pytest.approx(exact.flops.matmul, rel=1e-12)
    assert got["exp"] == exact.flops.exp
    assert got["compulsory_bytes"] == pytest.approx(exact.bytes.compulsory, rel=1e-12)
    if name == "sinks":  # the window part alone: the mask without the sink keys
        ws, we, _ = p._ranges(wl, np.arange(wl.q_len))
        assert got["pairs_per_head.window"] == int((we - ws).clip(0).sum())
        assert got["pairs_per_head.window"] + got["pairs_per_head.sinks"] == got["pairs_per_head"]


def test_textbook_forms():
    """Forms at hand-derived points: STA on HunyuanVideo's latent, Swin's 8-token shifted
    axis (segments 2, 4, 2), StreamingLLM's 4 sinks + window, PowerAttention token-level."""
    sta = SlidingTile.of((6, 8, 8), (3, 3, 3))
    wl = Workload.on_grid((30, 48, 80))
    assert evaluate(formula(sta, rank=3), wl, sta)["pairs_per_head"] == 115200 * 18 * 24 * 24
    swin = Swin((4,), (2,))
    assert evaluate(formula(swin), Workload.on_grid((8,)), swin)["pairs_per_head"] == 2 * 2 + 4 * 4 + 2 * 2
    sinks, n, w = Sinks(window=10, sinks=4), 100, 10
    # queries 0..9 see p + 1 keys; the rest w keys plus min(4, p - w + 1) sinks
    expected = w * (w + 1) // 2 + (n - w) * w + (1 + 2 + 3) + 4 * (n - w - 3)
    assert evaluate(formula(sinks), Workload.sequence(n), sinks)["pairs_per_head"] == expected
    power = Power(1)  # query q: itself plus the powers of two <= q
    expected = sum(1 + int(q).bit_length() for q in range(64))
    assert evaluate(formula(power), Workload.sequence(64), power)["pairs_per_head"] == expected


def test_broadcast_values_need_a_full_rank_form():
    p = Swin((4,))  # one window for a 2D grid: the form built from it has one dim
    with pytest.raises(PatternError, match="--window/--shift: the closed form was built for 1 grid dims"):
        evaluate(formula(p), Workload.on_grid((8, 8)), p)


@pytest.mark.parametrize("name", HOOKED)
def test_formula_cli_prints_hooked_patterns(name, capsys):
    rank = "2" if name in ("sliding-tile", "swin", "halo") else "1"
    assert main(["formula", name, "--rank", rank, "--phase", "fwd+bwd", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(QUANTITIES) <= set(out["formulas"]) and all(out["symbols"].values())
    assert any(symbol.endswith("_1") for symbol in out["symbols"]) == (rank == "2")  # one symbol set per dim


@pytest.mark.parametrize("argv, message", [
    (["formula", "swin", "--causal"], "--causal: --pattern swin has no causal variant"),
    (["formula", "sinks", "--rank", "2"], "--rank: --pattern sinks is 1D"),
])
def test_formula_cli_refuses_what_has_no_form(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_every_registered_pattern_has_a_closed_form_or_a_reason():
    """Read at run time: other patterns join REGISTRY; each needs a form or an entry above."""
    from attnsim.cli.formula import WITH_FORMULA  # built-in forms plus every hooked pattern

    missing = []
    for name, cls in sorted(REGISTRY.items()):
        if has_closed_form_hook(cls):
            forms = []
            for phase, causal in itertools.product(PHASES, (False, True)):
                try:
                    forms.append(formula(cls.symbolic(causal, 1), phase))
                except PatternError:  # a phase or variant the pattern refuses
                    continue
            assert forms and all(set(QUANTITIES) <= set(f.exprs) for f in forms), name
        elif name not in WITH_FORMULA and name not in NO_CLOSED_FORM:
            missing.append(name)
    print("patterns without a closed form or a stated reason:", ", ".join(missing) or "none")
    assert not missing, f"no closed form and no reason in NO_CLOSED_FORM: {', '.join(missing)}"
