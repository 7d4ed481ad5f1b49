"""The shared base of data-dependent token selection (attnsim.patterns.select): each query
attends keys chosen at run time, plus the cost of choosing them.

Which keys win depends on the data; how many each query attends, and what choosing them costs,
does not. Each pattern is one list of ops (its selection kernels, then sparse attention, then a
FlashAttention-2 backward where the method trains), assembled by one function from the
workload's sizes and a few per-pattern sums. Fed numpy sums it gives the exact counts; fed
sympy sums (under the assumptions the closed form states) it gives ``attnsim formula``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..errors import PatternError
from ..workload import Workload
from .backward import attention_backward, phase_ops
from .base import Pattern
from .opgraph import LSE_BYTES, Op, build_graph, ops_of, tensor_bytes



@dataclass(frozen=True)
class Dims:
    """Workload sizes: ints for exact counts, sympy symbols for closed forms."""

    b: object
    h: object
    hkv: object
    nq: object
    nkv: object
    d: object
    dv: object
    e: object
    eo: object

    @classmethod
    def of(cls, wl: Workload) -> "Dims":
        return cls(wl.batch, wl.q_heads, wl.kv_heads, wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim,
                   wl.element_bytes, wl.output_bytes)

    @classmethod
    def symbolic(cls, s: dict) -> "Dims":
        return cls(*(s[k] for k in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo")))


def div(a, b):
    """Exact division: floor for ints (callers check divisibility), a ratio for symbols."""
    return a // b if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)) else a / b


class _Phase(NamedTuple):
    """What ``backward.phase_ops`` reads of a workload: lets one builder serve ints and sympy."""

    phase: str


def causal_capped_sum(nq: int, nkv: int, cap: int) -> int:
    """Sum over bottom-right causal queries of min(cap, keys visible to the query)."""
    return int(np.minimum(cap, np.arange(nkv - nq, nkv, dtype=np.int64) + 1).sum())


def causal_capped_sum_sym(sp, n, m, cap):
    """The same sum in closed form: the first c queries see fewer than ``cap`` keys (N <= M)."""
    c = sp.Max(0, sp.Min(n, cap - 1 - (m - n)))
    return c * (m - n + 1) + c * (c - 1) / 2 + (n - c) * cap


@lru_cache(maxsize=32)
def cached_sums(pattern: "Selection", wl: Workload) -> dict:
    return pattern.exact_sums(wl)


class Selection(Pattern):
    """Each query attends keys chosen at run time; subclasses give the sums and selection ops."""

    tileable = False
    trains = False          # True: --phase bwd / fwd+bwd (the method is trained or fine-tuned)
    bias_per_pair = 0       # extra score-side op per attended pair (DMA adds a mask bias)

    def layout(self, wl: Workload):
        raise PatternError(f"{self.name}'s keys are chosen at run time: no per-dimension layout, no tile counts")

    def check_common(self, wl: Workload) -> None:
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError(f"--pattern {self.name} is for 1D sequences: use --seq, not --tokens")
        if wl.phase in ("bwd", "fwd+bwd") and not self.trains:
            raise PatternError(f"--pattern {self.name} is training-free: it models --phase fwd and decode, "
                               f"not {wl.phase}")

    # -- hooks: exact sums (ints), closed-form sums (sympy), selection ops, ids attention reads --
    def exact_sums(self, wl: Workload) -> dict:
        raise NotImplementedError

    def symbolic_sums(self, sp, s: dict, phase: str) -> tuple[dict, dict, tuple[str, ...]]:
        raise NotImplementedError

    def selection_ops(self, x: Dims, s: dict) -> list[Op]:
        raise NotImplementedError

    def backward_selection_ops(self, x: Dims, s: dict) -> list[Op]:
        return []

    def attention_ids(self, x: Dims, s: dict) -> dict:
        return {}

    # -- counts follow from the ops --------------------------------------------------------
    def ops(self, x: Dims, s: dict, phase: str) -> list[Op]:
        """Selection, then attention over ``s['pairs']`` pairs per head reading ``s['k_keys']`` keys
        and ``s['v_keys']`` values per KV head; training adds the FlashAttention-2 backward."""
        sc, rows = x.b * x.h * s["pairs"], x.b * x.h * x.nq
        q, o, lse = rows * x.d * x.e, rows * x.dv * x.eo, rows * LSE_BYTES
        k, v = x.b * x.hkv * s["k_keys"] * x.d * x.e, x.b * x.hkv * s["v_keys"] * x.dv * x.e
        ids = self.attention_ids(x, s)
        saved = {f"saved_{t}": size for t, size in ids.items()}

        def forward(training: bool) -> list[Op]:
            return self.selection_ops(x, s) + [
                Op("qk", "attention", matmul_flops=2 * sc * x.d, exp=sc, other_flops=(4 + self.bias_per_pair) * sc,
                   per_pair=True, reads={"q": q, "k": k, **ids}, writes={"p": 0, **(saved if training else {})}),
                Op("pv", "attention", matmul_flops=2 * sc * x.dv, side="pv", per_pair=True, other_flops=rows * x.dv,
                   reads={"p": 0, "v": v}, writes={"o": o, **({"lse": lse} if training else {})})]

        def backward() -> list[Op]:
            io = {"q": {"q": q}, "k": {"k": k}, "v": {"v": v}, "o": {"o": o}, "do": {"do": o},
                  "lse": {"lse": lse}, "dq": {"dq": q}, "dk": {"dk": k}, "dv": {"dv": v}}
            return (attention_backward(io, sc, rows, x.d, x.dv, extra_reads=saved)
                    + self.backward_selection_ops(x, s))

        return phase_ops(_Phase(phase), forward, backward)

    def pairs_per_head(self, wl: Workload) -> int:
        return cached_sums(self, wl)["pairs"]

    def touched_keys(self, wl: Workload) -> int:
        return cached_sums(self, wl)["k_keys"]

    def op_graph(self, wl: Workload, pairs: int):
        return build_graph(self.ops(Dims.of(wl), cached_sums(self, wl), wl.phase))

    def closed_form(self, sp, sym: dict, phase: str):
        if phase in ("bwd", "fwd+bwd") and not self.trains:
            raise PatternError(f"--pattern {self.name} is training-free: no --phase {phase} closed form")
        sums, meanings, assumes = self.symbolic_sums(sp, sym, phase)
        graph = build_graph(self.ops(Dims.symbolic(sym), sums, phase))
        ops, (inputs, outputs) = ops_of(graph), tensor_bytes(graph)
        exprs = {"pairs_per_head": sums["pairs"], "matmul_flops": sum(op.matmul_flops for op in ops),
                 "exp": sum(op.exp for op in ops),
                 "compulsory_bytes": sum(inputs.values()) + sum(outputs.values())}
        return {k: sp.sympify(v) for k, v in exprs.items()}, meanings, assumes
