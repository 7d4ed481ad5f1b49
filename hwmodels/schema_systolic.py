"""Profile fields of ``kind: systolic`` (TPU-like matrix units): field -> (unit family, kinds
that require it, kinds that may have it). Read by attnsim.hwmodels.schema.

The generic fields mean, on a systolic target: ``compute_units`` = cores (TPU TensorCores)
per chip, ``vector_flops_per_s`` = f32 vector-unit (VPU) ops per second, ``exp_per_s`` =
exponentials per second on the transcendental unit. The model is attnsim.hwmodels.systolic.
"""
from __future__ import annotations

_SYSTOLIC = {"systolic"}

SYSTOLIC_FIELDS: dict[str, tuple[str, set[str], set[str]]] = {
    # One matrix unit: an R x C weight-stationary array; the contraction runs down its R rows,
    # the output columns across its C columns (TPU MXU: 128 x 128 up to v5, 256 x 256 on v6e).
    "mxu_rows": ("count", _SYSTOLIC, _SYSTOLIC),
    "mxu_cols": ("count", _SYSTOLIC, _SYSTOLIC),
    "mxus_per_core": ("count", _SYSTOLIC, _SYSTOLIC),
    # Fixed cycles per matmul whose result a dependent step waits for: first weight load,
    # the array's pipeline fill and drain, and popping the last results.
    "mxu_fill_drain_cycles": ("cycles", _SYSTOLIC, _SYSTOLIC),
    # Scalar-core work per grid step of a Pallas-style kernel (loop control, DMA issue, waits).
    "grid_step_overhead_cycles": ("cycles", _SYSTOLIC, _SYSTOLIC),
    # On-chip vector memory (VMEM) per core: the attention tiles, double-buffered, must fit.
    "vmem_bytes_per_core": ("bytes", _SYSTOLIC, _SYSTOLIC),
    # Vector ops to build and apply the mask on one score of a partially masked tile.
    "vector_ops_per_masked_score": ("count", _SYSTOLIC, _SYSTOLIC),
}
