"""The strict hardware-profile schema: which fields each target kind has, in which units."""
from __future__ import annotations

SCHEMA_VERSION = 1
KINDS = ("gpu", "cpu", "systolic", "optical4f")
MATMUL_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
TOP_LEVEL_TEXT = ("schema_version", "name", "kind", "description")
QUANTITY_KEYS = {"value", "unit", "source", "note"}

# field -> (unit family, kinds that require it, kinds that may have it)
_ALL = set(KINDS)
_DIGITAL = {"gpu", "cpu", "systolic"}  # optical4f profiles describe their digital host by its own fields
QUANTITY_FIELDS: dict[str, tuple[str, set[str], set[str]]] = {
    "vector_flops_per_s": ("FLOP/s", _ALL, _ALL),
    "exp_per_s": ("op/s", _ALL, _ALL),
    "memory_bw_bytes_per_s": ("B/s", _ALL, _ALL),
    "memory_size_bytes": ("bytes", _ALL, _ALL),
    "compute_units": ("count", _DIGITAL, _ALL),
    "clock_hz": ("Hz", _DIGITAL, _ALL),
    "launch_overhead_s": ("s", _ALL, _ALL),
    "smem_bytes_per_unit": ("bytes", {"gpu"}, {"gpu"}),
    "l2_bytes": ("bytes", {"gpu"}, {"gpu"}),
    "l1d_bytes_per_core": ("bytes", {"cpu"}, {"cpu"}),
    "l2_bytes_per_core": ("bytes", {"cpu"}, {"cpu"}),
    "l3_bytes": ("bytes", {"cpu"}, {"cpu"}),
    "tdp_w": ("W", set(), _ALL),
    # Energy per operation / byte (optional on every kind; sourced): attnsim.hwmodels.energy.
    "energy_per_matmul_flop_j": ("J", set(), _ALL),
    "energy_per_vector_op_j": ("J", set(), _ALL),
    "energy_per_dram_byte_j": ("J", set(), _ALL),
    # Tile-level GPU model (attnsim.hwmodels.tilecost). Rough until `attnsim calibrate` fits them.
    "tile_mma_efficiency": ("fraction", {"gpu"}, {"gpu"}),
    "l2_bw_bytes_per_s": ("B/s", {"gpu"}, {"gpu"}),
    "tile_overhead_cycles": ("cycles", {"gpu"}, {"gpu"}),
    "cta_overhead_cycles": ("cycles", {"gpu"}, {"gpu"}),
    "mask_ops_per_score": ("count", {"gpu"}, {"gpu"}),
    "ctas_per_unit": ("count", {"gpu"}, {"gpu"}),
}
# Kind-specific fields live beside their cost models (systolic arrays, free-space optics).
from .schema_optical import OPTICAL_FIELDS  # noqa: E402
from .schema_systolic import SYSTOLIC_FIELDS  # noqa: E402

QUANTITY_FIELDS.update(SYSTOLIC_FIELDS)
QUANTITY_FIELDS.update(OPTICAL_FIELDS)
FRACTION_FIELDS = frozenset(f for f, (family, _, _) in QUANTITY_FIELDS.items() if family == "fraction")
# Optional mapping: fused-kernel default tile shapes by head dim (gpu only).
NATTEN_TILES_FIELD = "natten_tiles"
MATMUL_FIELD = "matmul_flops_per_s"
MATMUL_FAMILY = "FLOP/s"
