"""Exact, hardware-free counts for (workload, pattern): pairs, FLOPs by op, bytes.

FLOPs are 2 per multiply-accumulate. Exponentials are counted apart from other softmax work
because GPUs run them on a separate, much slower unit (the SFU/MUFU).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

from .patterns.base import Pattern
from .tiles import POLICY_NOTES, TileCounts, Tiling, count_tiles
from .workload import Workload
from .patterns.opgraph import LSE_BYTES

# Non-exp softmax FLOPs per attended score: scale, running-max compare, subtract, row-sum add.
FWD_SOFTMAX_OPS_PER_PAIR = 4
# Backward per score: recompute's scale + subtract, and dS = P * (dP - delta) (sub, mul).
BWD_SOFTMAX_OPS_PER_PAIR = 4
FWD_PASSES_OVER_SCORES = 4  # unfused fwd: write S, read S, write P, read P
BWD_PASSES_OVER_SCORES = 6  # unfused bwd: read P twice, write + read dP, write dS, read dS

QK_SIDE_OPS = frozenset({"qk", "qk_recompute", "dq", "dk"})  # contract over the QK head dim
ASSUMPTIONS = [
    "FLOPs count 2 per multiply-accumulate; exp counted separately, one per attended score",
    "backward is FlashAttention-2 style: recomputes S=QK^T and P=exp(S-LSE), then dV=P^T dO, "
    "dP=dO V^T, dS=P*(dP-delta), dQ=dS K, dK=dS^T Q (2.5x the forward matmul FLOPs)",
    "compulsory bytes: each needed element of Q, K, V (and dO, O, LSE in backward) read once, "
    "each output written once; keys no query attends are not read",
    "unfused bytes: the dense q_len x kv_len score matrix is materialised in the input dtype "
    "(4 passes forward, 6 backward), whatever the mask",
]


@dataclass(frozen=True)
class Flops:
    """FLOPs by op (totals over batch and heads). ``qk`` sums the matmuls contracting over
    the QK head dim (S=QKᵀ, dQ, dK), ``pv`` those over the V head dim (O=PV, dV, dP)."""

    by_op: dict[str, int]
    qk: int
    pv: int
    exp: int
    softmax_other: int
    executed: int | None = None  # matmul FLOPs of every visited tile, masked-out work included

    @property
    def matmul(self) -> int:
        return self.qk + self.pv

    def to_dict(self) -> dict:
        return {**asdict(self), "matmul": self.matmul}


@dataclass(frozen=True)
class Bytes:
    """Memory traffic in bytes. ``compulsory`` is a lower bound for any implementation;
    ``unfused`` is a matmul-softmax-matmul implementation that writes the scores."""

    by_tensor: dict[str, int]
    compulsory: int
    unfused: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Counts:
    workload: Workload
    pattern: str
    pairs_per_head: int
    dense_pairs_per_head: int
    touched_keys: int
    flops: Flops
    bytes: Bytes
    assumptions: tuple[str, ...] = field(default_factory=tuple)
    tiles: TileCounts | None = None
    kernels: tuple[str, ...] | None = None  # multi-op patterns: the kernels their ops form

    @property
    def attended_pairs(self) -> int:
        """Kept (query, key) pairs over every batch and query head."""
        return self.pairs_per_head * self.workload.heads_total

    @property
    def density(self) -> float:
        return self.pairs_per_head / self.dense_pairs_per_head

    def to_dict(self) -> dict:
        return {
            "attended_pairs": self.attended_pairs,
            "pairs_per_head": self.pairs_per_head,
            "dense_pairs_per_head": self.dense_pairs_per_head,
            "density": self.density,
            "touched_keys_per_head": self.touched_keys,
            "flops": self.flops.to_dict(),
            "bytes": self.bytes.to_dict(),
        }

    def tiles_dict(self) -> dict | None:
        """Tile counts summed over batch and heads (per-problem counts under ``per_head``)."""
        if self.tiles is None:
            return None
        t, heads = self.tiles, self.workload.heads_total
        totals = {k: v * heads for k, v in t.to_dict().items() if isinstance(v, int)}
        return {**t.to_dict(), **totals, "per_head": t.to_dict()}


def _flops(wl: Workload, pairs: int) -> Flops:
    heads = wl.heads_total
    qk_mm, pv_mm = 2 * heads * pairs * wl.qk_head_dim, 2 * heads * pairs * wl.v_head_dim
    fwd = {"qk": qk_mm, "pv": pv_mm}
    bwd = {"qk_recompute": qk_mm, "dv": pv_mm, "dp": pv_mm, "dq": qk_mm, "dk": qk_mm}
    rows = heads * wl.q_len
    fwd_other = FWD_SOFTMAX_OPS_PER_PAIR * heads * pairs + rows * wl.v_head_dim  # + O / l
    bwd_other = BWD_SOFTMAX_OPS_PER_PAIR * heads * pairs + 2 * rows * wl.v_head_dim  # + delta
    exp = heads * pairs
    if wl.phase in ("fwd", "decode"):
        by_op, n_exp, other = fwd, exp, fwd_other
    elif wl.phase == "bwd":
        by_op, n_exp, other = bwd, exp, bwd_other
    else:  # fwd+bwd
        by_op = {**fwd, **{f"bwd_{k}": v for k, v in bwd.items()}}
        n_exp, other = 2 * exp, fwd_other + bwd_other
    qk = sum(v for k, v in by_op.items() if k.removeprefix("bwd_") in QK_SIDE_OPS)
    return Flops(by_op=by_op, qk=qk, pv=sum(by_op.values()) - qk, exp=n_exp, softmax_other=other)


def _bytes(wl: Workload, touched_keys: int, pairs_dense: int) -> Bytes:
    e, eo, b = wl.element_bytes, wl.output_bytes, wl.batch
    q = b * wl.q_heads * wl.q_len * wl.qk_head_dim * e
    k = b * wl.kv_heads * touched_keys * wl.qk_head_dim * e
    v = b * wl.kv_heads * touched_keys * wl.v_head_dim * e
    o = b * wl.q_heads * wl.q_len * wl.v_head_dim * eo
    lse = b * wl.q_heads * wl.q_len * LSE_BYTES
    fwd = {"q": q, "k": k, "v": v, "o": o}
    # Backward reads Q, K, V, O, dO, LSE and writes dQ, dK, dV (same sizes as Q, K, V).
    bwd = {"q": q, "k": k, "v": v, "o": o, "do": o, "lse": lse, "dq": q, "dk": k, "dv": v}
    scores = wl.heads_total * pairs_dense * e
    if wl.phase in ("fwd", "decode"):
        by_tensor, passes = fwd, FWD_PASSES_OVER_SCORES
    elif wl.phase == "bwd":
        by_tensor, passes = bwd, BWD_PASSES_OVER_SCORES
    else:  # the forward also writes LSE for the backward
        by_tensor = {**{f"fwd_{k}": v for k, v in {**fwd, "lse": lse}.items()},
                     **{f"bwd_{k}": v for k, v in bwd.items()}}
        passes = FWD_PASSES_OVER_SCORES + BWD_PASSES_OVER_SCORES
    compulsory = sum(by_tensor.values())
    return Bytes(by_tensor=by_tensor, compulsory=compulsory, unfused=compulsory + passes * scores)


def _graph_counts(wl: Workload, graph, pairs_dense: int) -> tuple[Flops, Bytes, tuple[str, ...]]:
    """FLOPs and bytes of a multi-op pattern, summed over its op graph."""
    from .patterns.opgraph import kernel_traffic_bytes, kernels, ops_of, tensor_bytes

    ops = ops_of(graph)
    qk = sum(op.matmul_flops for op in ops if op.side == "qk")
    flops = Flops(by_op={op.name: op.matmul_flops for op in ops}, qk=qk,
                  pv=sum(op.matmul_flops for op in ops) - qk, exp=sum(op.exp for op in ops),
                  softmax_other=sum(op.other_flops for op in ops))
    inputs, outputs = tensor_bytes(graph)
    scores = wl.heads_total * pairs_dense * wl.element_bytes
    passes = {"bwd": BWD_PASSES_OVER_SCORES, "fwd+bwd": FWD_PASSES_OVER_SCORES + BWD_PASSES_OVER_SCORES}
    unfused = kernel_traffic_bytes(graph) + passes.get(wl.phase, FWD_PASSES_OVER_SCORES) * scores
    by_tensor = {**inputs, **outputs}
    return flops, Bytes(by_tensor, sum(by_tensor.values()), unfused), tuple(kernels(graph))


@lru_cache(maxsize=1024)
def _matmul_flops_per_pair(wl: Workload) -> int:
    return _flops(wl, 1).matmul


def _executed_flops(wl: Workload, graph, flops: Flops, pairs: int, visited_pairs: int) -> int:
    """Matmul FLOPs with every (query, key) slot of the visited tiles computed, masked or not."""
    if graph is None:  # matmul FLOPs of one pair in every head, times the visited slots
        return _matmul_flops_per_pair(wl) * visited_pairs
    from .patterns.opgraph import ops_of

    per_pair = sum(op.matmul_flops for op in ops_of(graph) if op.per_pair)
    return flops.matmul - per_pair + (per_pair * visited_pairs // pairs if pairs else 0)


def count(wl: Workload, pattern: Pattern, tiling: Tiling | None = None) -> Counts:
    """Exact counts of ``pattern`` on ``wl`` (and its tiles, given a tiling); raises
    PatternError for impossible parameters."""
    pattern.check(wl)
    wl = pattern.effective_workload(wl)
    pairs = pattern.pairs_per_head(wl)
    touched = pattern.touched_keys(wl)
    dense_pairs = wl.q_len * wl.kv_len
    graph = pattern.op_graph(wl, pairs)
    if graph is None:
        flops, bytes_, kernel_names = _flops(wl, pairs), _bytes(wl, touched, dense_pairs), None
    else:
        flops, bytes_, kernel_names = _graph_counts(wl, graph, dense_pairs)
    tiles, notes = None, []
    if tiling is not None:
        tiles = count_tiles(wl, pattern, tiling)
        f = flops
        flops = Flops(f.by_op, f.qk, f.pv, f.exp, f.softmax_other,
                      executed=_executed_flops(wl, graph, flops, pairs, tiles.visited_pairs))
        notes = [POLICY_NOTES[tiles.policy]]
    return Counts(
        workload=wl, pattern=pattern.describe(), pairs_per_head=pairs,
        dense_pairs_per_head=dense_pairs, touched_keys=touched,
        flops=flops, bytes=bytes_,
        assumptions=tuple(ASSUMPTIONS + pattern.assumptions(wl) + notes), tiles=tiles,
        kernels=kernel_names,
    )
