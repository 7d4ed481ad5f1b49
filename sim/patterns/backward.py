"""Backward ops shared by the multi-op patterns, in the FlashAttention-2 convention of counting.py.

An attention backward recomputes ``S = Q K^T`` and ``P = exp(S - LSE)``, then ``dV = P^T dO``,
``dP = dO V^T``, ``dS = P * (dP - delta)``, ``dQ = dS K``, ``dK = dS^T Q``: five matmuls over the
attended pairs, 2.5x the forward's. FlashAttention-2 (and the Triton kernel HyperAttention ships)
runs it as three kernels: a ``delta = rowsum(dO * O)`` pre-pass, the main kernel accumulating dQ
in fp32, and a dQ conversion.

Training (``fwd+bwd``): the forward also writes what the backward reads — O, the LSE, and the
tensors named ``saved_*`` (forward intermediates kept for the backward, e.g. MoBA's block ids).
The two phases run apart (other layers in between), so every tensor of one is distinct from the
other's (prefixed ``fwd_`` / ``bwd_``): each phase reads its inputs and writes its outputs once,
as counting.py counts dense attention.
"""
from __future__ import annotations

from dataclasses import replace

from ..errors import PatternError
from ..workload import Workload
from .opgraph import Op

TRAINING_PHASES = ("bwd", "fwd+bwd")
FP32_BYTES = 4  # dQ accumulator, delta
RECOMPUTE_OPS_PER_PAIR = 2  # S = scale * QK^T, then S - LSE
AFTER_FORWARD = "after_forward"


def attention_backward(io: dict[str, dict[str, int]], scores: int, rows: int, d: int, dv: int, *,
                       stem: str = "", kernel: str | None = None,
                       extra_reads: dict[str, int] | None = None) -> list[Op]:
    """FlashAttention-2 backward over ``scores`` attended (query, key) pairs in ``rows`` softmax
    rows (totals over batch and heads). ``io`` maps the roles q, k, v, o, do, lse (read) and dq,
    dk, dv (written) to their tensors ``{name: bytes}``; the score recompute also reads
    ``extra_reads`` (e.g. block ids). ``kernel`` fuses every op into one kernel; by default
    FlashAttention-2's three kernels."""
    from ..counting import BWD_SOFTMAX_OPS_PER_PAIR  # lazy: counting imports the patterns

    ds_ops = BWD_SOFTMAX_OPS_PER_PAIR - RECOMPUTE_OPS_PER_PAIR  # dS = P * (dP - delta)
    name = f"bwd_{stem}"
    delta, p, ds, dq_accum = (f"{stem}{x}" for x in ("delta", "p_bwd", "ds", "dq_accum"))
    delta_kernel, main, convert = (kernel,) * 3 if kernel else (
        f"bwd_{stem}delta", f"bwd_{stem}attention", f"bwd_{stem}dq_convert")
    accum = {dq_accum: rows * d * FP32_BYTES} if kernel is None else io["dq"]
    ops = [
        Op(name + "delta", delta_kernel, other_flops=2 * rows * dv, reads={**io["o"], **io["do"]},
           writes={delta: rows * FP32_BYTES}),
        Op(name + "qk_recompute", main, matmul_flops=2 * scores * d, side="qk", exp=scores,
           other_flops=RECOMPUTE_OPS_PER_PAIR * scores, per_pair=True,
           reads={**io["q"], **io["k"], **io["lse"], **(extra_reads or {})}, writes={p: 0}),
        Op(name + "dv", main, matmul_flops=2 * scores * dv, side="pv", per_pair=True,
           reads={p: 0, **io["do"]}, writes=io["dv"]),
        Op(name + "dp", main, matmul_flops=2 * scores * dv, side="pv", other_flops=ds_ops * scores,
           per_pair=True, reads={p: 0, **io["do"], **io["v"], delta: rows * FP32_BYTES}, writes={ds: 0}),
        Op(name + "dq", main, matmul_flops=2 * scores * d, side="qk", per_pair=True,
           reads={ds: 0, **io["k"]}, writes=accum),
        Op(name + "dk", main, matmul_flops=2 * scores * d, side="qk", per_pair=True,
           reads={ds: 0, **io["q"]}, writes=io["dk"]),
    ]
    if kernel is None:
        ops.append(Op(name + "dq_convert", convert, reads=accum, writes=io["dq"]))
    return ops


def phase_ops(wl: Workload, forward, backward) -> list[Op]:
    """The ops of ``wl.phase``: ``forward(training)`` builds the forward (``training``: it also
    writes O's LSE and the ``saved_*`` tensors), ``backward()`` the backward."""
    if wl.phase not in TRAINING_PHASES:
        return forward(False)
    if wl.phase == "bwd":
        return backward()
    fwd = [_prefixed(op, "fwd_") for op in forward(True)]
    # a control edge, no bytes: the backward runs after the forward (orders the kernels; every
    # pattern's last forward op depends on all the others)
    fwd[-1] = replace(fwd[-1], writes={**fwd[-1].writes, AFTER_FORWARD: 0})
    bwd = [_prefixed(op, "bwd_") for op in backward()]
    return fwd + [replace(op, reads={**op.reads, AFTER_FORWARD: 0}) for op in bwd]


def _prefixed(op: Op, prefix: str) -> Op:
    return replace(op, reads={prefix + t: b for t, b in op.reads.items()},
                   writes={prefix + t: b for t, b in op.writes.items()})


def require_self_attention(wl: Workload, pattern: str) -> None:
    """Training runs self-attention: refuse a backward with q_len != kv_len."""
    if wl.phase in TRAINING_PHASES and wl.q_len != wl.kv_len:
        raise PatternError(f"--phase {wl.phase} of --pattern {pattern} trains self-attention: use --seq "
                           "without --kv-seq")
