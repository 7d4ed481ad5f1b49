"""Energy of a priced GPU/CPU run, by component, from the profile's per-operation energies
(sourced); without them, board power x time as an upper bound (and the output says so)."""
from __future__ import annotations

FIELDS = ("energy_per_matmul_flop_j", "energy_per_vector_op_j", "energy_per_dram_byte_j")


def energy_j(counts, hw, time_s: float) -> tuple[dict[str, float], str | None]:
    """(joules by component, note) for ``counts`` run in ``time_s`` on ``hw``; ({}, note) when
    the profile has neither per-op energies nor a board power."""
    if all(f in hw.fields for f in FIELDS):
        f = counts.flops
        return ({"compute_matmul": f.matmul * hw.get("energy_per_matmul_flop_j"),
                 "compute_vector": (f.exp + f.softmax_other) * hw.get("energy_per_vector_op_j"),
                 "memory": counts.bytes.compulsory * hw.get("energy_per_dram_byte_j")},
                "energy from per-operation energies of the profile (dynamic energy only)")
    if "tdp_w" in hw.fields:
        return ({"board_power_bound": hw.get("tdp_w") * time_s},
                f"energy = board power {hw.get('tdp_w'):.0f} W x predicted time: an upper bound, no per-op energies")
    return {}, f"no energy: {hw.name} has no per-operation energies and no tdp_w"
