"""The workload: shapes, heads, dtype and phase of one attention call (hardware-free)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import WorkloadError

# Storage bytes per element of Q, K, V (and O, except fp8: see OUTPUT_BYTES).
DTYPES: dict[str, int] = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
# FP8 attention kernels (FlashAttention-3, cuDNN) write O in bf16, not fp8.
OUTPUT_BYTES: dict[str, int] = {**DTYPES, "fp8": 2}
PHASES = ("fwd", "bwd", "fwd+bwd", "decode")
MAX_GRID_RANK = 3


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WorkloadError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Workload:
    """One attention call: ``O = softmax(Q Kᵀ / √d) V`` per (batch, query head).

    ``grid`` is the token grid of a vision/video model (1–3 dims, row-major flattening);
    with a grid, ``q_len == kv_len == prod(grid)``. In the ``decode`` phase ``q_len`` is the
    number of new tokens per step and ``kv_len`` the KV-cache length.
    """

    batch: int
    q_heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    qk_head_dim: int
    v_head_dim: int
    dtype: str = "bf16"
    phase: str = "fwd"
    grid: tuple[int, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("batch", "q_heads", "kv_heads", "q_len", "kv_len", "qk_head_dim", "v_head_dim"):
            _positive_int(name, getattr(self, name))
        if self.q_heads % self.kv_heads:
            raise WorkloadError(
                f"heads={self.q_heads} is not divisible by kv_heads={self.kv_heads}: "
                "GQA/MQA needs each KV head shared by a whole number of query heads"
            )
        if self.dtype not in DTYPES:
            raise WorkloadError(f"dtype {self.dtype!r} is unknown: use one of {', '.join(DTYPES)}")
        if self.phase not in PHASES:
            raise WorkloadError(f"phase {self.phase!r} is unknown: use one of {', '.join(PHASES)}")
        if self.grid is not None:
            self._check_grid()

    def _check_grid(self) -> None:
        grid = tuple(self.grid)
        object.__setattr__(self, "grid", grid)
        if not 1 <= len(grid) <= MAX_GRID_RANK:
            raise WorkloadError(f"tokens grid must have 1 to 3 dims, got {len(grid)}")
        for extent in grid:
            _positive_int("tokens (each grid extent)", extent)
        if self.q_len != math.prod(grid) or self.kv_len != self.q_len:
            raise WorkloadError(
                "a token grid is self-attention: q_len and kv_len must both equal the grid size "
                f"{math.prod(grid)}; use --seq/--kv-seq for cross-attention"
            )
        if self.phase == "decode":
            raise WorkloadError("phase decode needs a 1D KV cache: use --seq/--kv-seq, not --tokens")

    @classmethod
    def sequence(cls, seq_len: int, *, kv_len: int | None = None, batch: int = 1, heads: int = 1,
                 kv_heads: int | None = None, head_dim: int = 128, v_head_dim: int | None = None,
                 dtype: str = "bf16", phase: str = "fwd", decode_tokens: int = 1) -> "Workload":
        """1D workload. In ``decode`` the KV cache holds ``kv_len`` (default ``seq_len``)
        tokens and ``decode_tokens`` new queries attend to it."""
        if phase == "decode":
            q_len, kv_len = decode_tokens, (kv_len if kv_len is not None else seq_len)
        else:
            q_len, kv_len = seq_len, (kv_len if kv_len is not None else seq_len)
        return cls(batch=batch, q_heads=heads, kv_heads=kv_heads or heads, q_len=q_len,
                   kv_len=kv_len, qk_head_dim=head_dim, v_head_dim=v_head_dim or head_dim,
                   dtype=dtype, phase=phase)

    @classmethod
    def on_grid(cls, grid: tuple[int, ...], *, batch: int = 1, heads: int = 1,
                kv_heads: int | None = None, head_dim: int = 128, v_head_dim: int | None = None,
                dtype: str = "bf16", phase: str = "fwd") -> "Workload":
        """Self-attention over a 1–3D token grid (e.g. video latents ``(30, 48, 80)``)."""
        grid = tuple(grid)
        if not grid:
            raise WorkloadError("tokens grid must have 1 to 3 dims, got 0")
        # A bad extent gets its own error from _check_grid, not a confusing length mismatch.
        n = math.prod(grid) if all(isinstance(e, int) and e > 0 for e in grid) else 1
        return cls(batch=batch, q_heads=heads, kv_heads=kv_heads or heads, q_len=n, kv_len=n,
                   qk_head_dim=head_dim, v_head_dim=v_head_dim or head_dim, dtype=dtype,
                   phase=phase, grid=grid)

    @property
    def element_bytes(self) -> int:
        return DTYPES[self.dtype]

    @property
    def output_bytes(self) -> int:
        return OUTPUT_BYTES[self.dtype]

    @property
    def q_grid(self) -> tuple[int, ...]:
        """Query positions as a grid (1D sequences are a 1-dim grid)."""
        return self.grid if self.grid is not None else (self.q_len,)

    @property
    def kv_grid(self) -> tuple[int, ...]:
        return self.grid if self.grid is not None else (self.kv_len,)

    @property
    def heads_total(self) -> int:
        """Independent (batch, query head) problems."""
        return self.batch * self.q_heads

    def with_(self, **changes) -> "Workload":
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return Workload(**values)
