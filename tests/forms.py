"""Shared check: a pattern's sympy closed forms, lambdified, equal its exact count."""
import pytest

from attnsim import count
from attnsim.formulas import evaluate, formula


def assert_closed_form_equals_count(wl, pattern, phase=None, rank=None) -> dict:
    """Pairs, matmul FLOPs, exponentials and compulsory bytes; returns the evaluated forms."""
    phase = wl.phase if phase is None else phase
    got = evaluate(formula(pattern, phase, rank or len(wl.q_grid)), wl, pattern)
    return assert_forms_match(got, count(wl, pattern))


def assert_forms_match(got: dict, exact) -> dict:
    """Evaluated closed forms ``got`` against the exact :class:`attnsim.counting.Counts`."""
    assert got["pairs_per_head"] == pytest.approx(exact.pairs_per_head, rel=1e-12)
    assert got["matmul_flops"] == pytest.approx(exact.flops.matmul, rel=1e-12)
    assert got["exp"] == pytest.approx(exact.flops.exp, rel=1e-12)
    assert got["compulsory_bytes"] == pytest.approx(exact.bytes.compulsory, rel=1e-12)
    if "softmax_other" in got:  # multi-op forms the vectorised sweep can price (MLA, linear)
        assert got["softmax_other"] == pytest.approx(exact.flops.softmax_other, rel=1e-12)
        assert got["kernels"] == len(exact.kernels)
    return got
