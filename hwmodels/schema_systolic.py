"""Profile fields of ``kind: systolic`` (TPU-like matrix units): field -> (unit family, kinds
that require it, kinds that may have it). Read by attnsim.hwmodels.schema."""
from __future__ import annotations

SYSTOLIC_FIELDS: dict[str, tuple[str, set[str], set[str]]] = {}
