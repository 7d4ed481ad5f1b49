"""attnsim: exact counts and predicted times for attention patterns on real hardware.

The core (workload, patterns, counting) is hardware-free and torch-free::

    from attnsim import Workload, count, patterns
    wl = Workload.on_grid((30, 48, 80), batch=1, heads=24, head_dim=128, dtype="bf16")
    c = count(wl, patterns.Neighborhood(window=(18, 24, 24)))
    c.attended_pairs, c.flops.matmul

Pricing lives in :mod:`attnsim.hwmodels`, the one-call entry point in :func:`attnsim.predict`.
"""
from .errors import AttnsimError, PatternError, PricingError, ProfileError, WorkloadError
from .workload import DTYPES, PHASES, Workload
from .counting import Counts, count
from . import patterns

__all__ = [
    "AttnsimError", "PatternError", "PricingError", "ProfileError", "WorkloadError",
    "DTYPES", "PHASES", "Workload", "Counts", "count", "patterns", "predict",
]
__version__ = "0.1.0"


def predict(workload, pattern, hw, **kwargs):
    """Count and price in one call; see :func:`attnsim.predict_api.predict`."""
    from .predict_api import predict as _predict  # lazy: keeps `import attnsim` light

    return _predict(workload, pattern, hw, **kwargs)
