"""Energy of GPU/CPU predictions: per-op energies when the profile has them, else board power x
time as a stated upper bound."""
import dataclasses

import pytest

from attnsim import Workload, count, predict
from attnsim.hwmodels import load_profile
from attnsim.hwmodels.energy import energy_j
from attnsim.hwmodels.profile import Quantity
from attnsim.patterns import Causal


def test_board_power_bound_is_tdp_times_predicted_time():
    r = predict(Workload.sequence(8192, heads=32), Causal(), "H100-SXM")
    tdp = r.hw.get("tdp_w")
    assert r.pattern.energy_j == {"board_power_bound": pytest.approx(tdp * r.pattern.predicted_s)}
    out = r.to_dict()
    assert out["energy_j"] == pytest.approx(tdp * r.pattern.predicted_s)
    assert any("upper bound" in a for a in out["assumptions"])


def test_per_operation_energies_by_component():
    hw = load_profile("H100-SXM")
    extra = {"energy_per_matmul_flop_j": 0.5e-12, "energy_per_vector_op_j": 2e-12, "energy_per_dram_byte_j": 10e-12}
    hw = dataclasses.replace(hw, fields={**hw.fields, **{k: Quantity(v, v, "J", "test value") for k, v in extra.items()}})
    c = count(Workload.sequence(1024, heads=2), Causal())
    joules, note = energy_j(c, hw, time_s=1.0)
    # by hand: matmul FLOPs x 0.5 pJ, (exp + other softmax ops) x 2 pJ, compulsory bytes x 10 pJ
    assert joules == {"compute_matmul": pytest.approx(c.flops.matmul * 0.5e-12),
                      "compute_vector": pytest.approx((c.flops.exp + c.flops.softmax_other) * 2e-12),
                      "memory": pytest.approx(c.bytes.compulsory * 10e-12)}
    assert "per-operation" in note


def test_no_energy_without_sources_says_so():
    hw = load_profile("EPYC-2vCPU")
    joules, note = energy_j(count(Workload.sequence(64), Causal()), hw, 1.0)
    assert joules == {} and "no tdp_w" in note
