"""The strict hardware-profile schema: which fields each target kind has, in which units."""
from __future__ import annotations

SCHEMA_VERSION = 1
KINDS = ("gpu", "cpu")
MATMUL_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
TOP_LEVEL_TEXT = ("schema_version", "name", "kind", "description")
QUANTITY_KEYS = {"value", "unit", "source", "note"}

# field -> (unit family, kinds that require it, kinds that may have it)
_ALL = set(KINDS)
QUANTITY_FIELDS: dict[str, tuple[str, set[str], set[str]]] = {
    "vector_flops_per_s": ("FLOP/s", _ALL, _ALL),
    "exp_per_s": ("op/s", _ALL, _ALL),
    "memory_bw_bytes_per_s": ("B/s", _ALL, _ALL),
    "memory_size_bytes": ("bytes", _ALL, _ALL),
    "compute_units": ("count", _ALL, _ALL),
    "clock_hz": ("Hz", _ALL, _ALL),
    "launch_overhead_s": ("s", _ALL, _ALL),
    "smem_bytes_per_unit": ("bytes", {"gpu"}, {"gpu"}),
    "l2_bytes": ("bytes", {"gpu"}, {"gpu"}),
    "l1d_bytes_per_core": ("bytes", {"cpu"}, {"cpu"}),
    "l2_bytes_per_core": ("bytes", {"cpu"}, {"cpu"}),
    "l3_bytes": ("bytes", {"cpu"}, {"cpu"}),
    "tdp_w": ("W", set(), _ALL),
    # Tile-level GPU model (attnsim.hwmodels.tilecost). Rough until `attnsim calibrate` fits them.
    "tile_mma_efficiency": ("fraction", {"gpu"}, {"gpu"}),
    "l2_bw_bytes_per_s": ("B/s", {"gpu"}, {"gpu"}),
    "tile_overhead_cycles": ("cycles", {"gpu"}, {"gpu"}),
    "cta_overhead_cycles": ("cycles", {"gpu"}, {"gpu"}),
    "mask_ops_per_score": ("count", {"gpu"}, {"gpu"}),
    "ctas_per_unit": ("count", {"gpu"}, {"gpu"}),
}
FRACTION_FIELDS = frozenset(f for f, (family, _, _) in QUANTITY_FIELDS.items() if family == "fraction")
# Optional mapping: fused-kernel default tile shapes by head dim (gpu only).
NATTEN_TILES_FIELD = "natten_tiles"
MATMUL_FIELD = "matmul_flops_per_s"
MATMUL_FAMILY = "FLOP/s"
