"""Non-GPU/CPU target kinds behind one interface: a time per named stage, an energy per
component, and the assumptions they rest on. Each kind's model lives in its own module
(``systolic``, ``optical``) and returns a :class:`TargetTime`."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PricingError


@dataclass(frozen=True)
class TargetTime:
    breakdown_s: dict[str, float]   # named stages that add up to the predicted time
    energy_j: dict[str, float]      # joules by component (compute, memory, conversion, ...)
    assumptions: tuple[str, ...]
    bound_by: str                   # the stage that dominates


PRICED_KINDS = ("systolic", "optical4f")


def price_target(counts, hw) -> TargetTime:
    if hw.kind == "systolic":
        from .systolic import price_systolic

        return price_systolic(counts, hw)
    if hw.kind == "optical4f":
        from .optical import price_optical

        return price_optical(counts, hw)
    raise PricingError(f"no target model for kind {hw.kind!r}")
