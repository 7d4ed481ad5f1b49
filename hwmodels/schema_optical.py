"""Profile fields of ``kind: optical4f`` (free-space 4f optical convolution): field -> (unit
family, kinds that require it, kinds that may have it). Read by attnsim.hwmodels.schema."""
from __future__ import annotations

OPTICAL_FIELDS: dict[str, tuple[str, set[str], set[str]]] = {}
