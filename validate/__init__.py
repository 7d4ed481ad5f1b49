"""Validation layer: the only part of attnsim that imports torch (``pip install attnsim[validate]``).

Kernel runners, timing harness, results store and calibration land here; nothing in the
hardware-free core may import this package.
"""
