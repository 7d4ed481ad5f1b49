"""One exception family. The CLI prints ``str(err)`` on one line and exits 2."""


class AttnsimError(Exception):
    """Base class: bad input or an unsupported request, never a bug."""


class WorkloadError(AttnsimError):
    """A workload that cannot exist (zero sizes, Hq not divisible by Hkv, ...)."""


class PatternError(AttnsimError):
    """Pattern parameters that do not fit the workload (window > length, ...)."""


class ProfileError(AttnsimError):
    """A hardware profile that fails the strict schema."""


class PricingError(AttnsimError):
    """A (counts, profile) combination the cost model cannot price, with why."""
