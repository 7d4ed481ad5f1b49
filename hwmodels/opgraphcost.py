"""Work models of the naive multi-op kernels (``attnsim.validate.naive_runners``).

A naive runner issues one torch op after another, and every op reads its operands from memory
and writes its result back. Its time is kernelcost's linear model

    t = c_call + share · Σ_f c_f · work_f

with the same feature names (kernelcost.FEATURES), so ``attnsim calibrate`` fits them per
kernel unchanged. The work comes from the pattern's op graph (``pattern.op_graph``, built with
the (query, key) pairs the runner executes) and from the list of torch ops below, which mirrors
each runner line by line (each torch op names the op-graph node whose work it does):

- ``call`` = 1: Python and dispatcher entry of the call.
- ``matmul_flops``: the op graph's matmul FLOPs, executed by torch products (bmm, baddbmm,
  matmul) whose three dims (rows, contraction, columns) are all >= NARROW_DIM;
  ``narrow_matmul_flops``: those of products with a dim below it (matrix-vector rows, rank-1
  state updates, gates over few blocks), which leave the GEMM micro-kernel's vector registers
  part empty and reuse no operand: a lower rate (inferred: AVX-512 holds 16 fp32 lanes).
- ``exp``: the op graph's exponentials: every element a softmax exponentiates, masked ones too.
- ``masked_slots``: elements a mask op passes over (masked_fill, the gate's additive bias).
- ``bytes``: the op graph's compulsory bytes (its inputs read once, its outputs written once).
- ``stream_cache_bytes`` / ``stream_dram_bytes``: every other byte the torch ops move —
  intermediates written and read back, inputs read again, gathered rows — from the last-level
  cache while one op's working set fits in half of it, else from DRAM (kernelcost.fits_in_cache).
- ``fresh_bytes``: tensors the ops allocate (outputs and intermediates) from glibc's mmap
  threshold up (kernelcost.MMAP_THRESHOLD_BYTES): freshly mapped each call, so first-touch page
  faults, e.g. the per-chunk states of causal linear attention at small chunks.
- ``tiles``: the number of torch ops per call (the name is kernelcost's; for these kernels each
  op is one dispatched unit of work): each pays a dispatch and a thread-pool start whatever its
  size, which dominates short calls. Not divided among threads: dispatch is serial.

``share``: the busiest thread's share, 1/threads on CPUs (each torch op splits its own work
evenly over the thread pool), 1 on GPUs.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import AttnsimError
from ..patterns import Agent, Linear, LowRank, MoBA, Pattern
from ..patterns.opgraph import ops_of, tensor_bytes
from ..workload import Workload
from .kernelcost import FEATURES, MMAP_THRESHOLD_BYTES, fits_in_cache
from .profile import Profile

NARROW_DIM = 16     # a product with a dim below this runs matrix-vector-like
INDEX_BYTES = 8     # torch's int64 indices (topk, index_select rows)
MASK_BYTES = 1      # torch.bool


@dataclass(frozen=True)
class TorchOp:
    graph_op: str                             # the op-graph node whose work it does
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    dims: tuple[int, int, int] | None = None  # a product (rows, contraction, columns): it runs graph_op's matmul
    masked: int = 0                           # elements a mask op passes over


Plan = tuple[object, list[TorchOp], dict[str, int]]  # (op graph, torch ops, bytes of each tensor)


def _linear(wl: Workload, p: Linear) -> Plan:
    bh, e, n, d, dv = wl.batch * wl.q_heads, wl.element_bytes, wl.q_len, wl.qk_head_dim, wl.v_head_dim
    sizes = {"phi_q": bh * n * d * e, "phi_k": bh * n * d * e}
    feature = [TorchOp("feature_map", ("q",), ("phi_q",)), TorchOp("feature_map", ("k",), ("phi_k",))]
    if wl.phase == "decode":  # one token: rank-1 update of the fp32 state, matrix-vector readout
        ops = [TorchOp("state_update", ("state_in", "phi_k", "v"), ("state_out",), (d, 1, dv)),
               TorchOp("readout", ("phi_q", "state_out"), ("o",), (1, d, dv))]
    elif not p.causal:
        sizes["h"] = bh * d * dv * e
        ops = [TorchOp("state", ("phi_k", "v"), ("h",), (d, n, dv)),
               TorchOp("readout", ("phi_q", "h"), ("o",), (n, d, dv))]
    else:
        c, chunks = p.chunk, n // p.chunk
        sizes.update(s=bh * chunks * c * c * e, causal_mask=c * c * MASK_BYTES, o_intra=bh * n * dv * e,
                     kv=bh * chunks * d * dv * e, prefix=bh * (chunks - 1) * d * dv * e,
                     states=bh * chunks * d * dv * e)
        ops = [TorchOp("intra_qk", ("phi_q", "phi_k"), ("s",), (c, d, c)),
               TorchOp("intra_pv", ("s", "causal_mask"), ("s",), masked=bh * chunks * c * c),
               TorchOp("intra_pv", ("s", "v"), ("o_intra",), (c, c, dv)),
               TorchOp("state_update", ("phi_k", "v"), ("kv",), (d, c, dv)),
               TorchOp("state_update", ("prefix",), ("prefix",)),  # cumsum: the state before each chunk
               TorchOp("inter", ("o_intra", "phi_q", "states"), ("o",), (c, d, dv))]
    return p.op_graph(wl, p.pairs_per_head(wl)), feature + ops, sizes


def _lowrank(wl: Workload, p: LowRank) -> Plan:
    bh, e, n, m, d, dv, r = (wl.batch * wl.q_heads, wl.element_bytes, wl.q_len, wl.kv_len, wl.qk_head_dim,
                             wl.v_head_dim, p.rank)
    # one E (F) broadcast to every head: each head's product reads it again (from cache)
    sizes = {"E_again": (bh - 1) * r * m * e, "F_again": (bh - 1) * r * m * e, "k_proj": bh * r * d * e,
             "v_proj": bh * r * dv * e, "s": bh * n * r * e, "p": bh * n * r * e}
    ops = [TorchOp("project_k", ("E", "E_again", "k"), ("k_proj",), (r, m, d)),
           TorchOp("project_v", ("F", "F_again", "v"), ("v_proj",), (r, m, dv)),
           TorchOp("qk", ("q", "k_proj"), ("s",), (n, d, r)),
           TorchOp("qk", ("s",), ("p",)),  # softmax
           TorchOp("pv", ("p", "v_proj"), ("o",), (n, r, dv))]
    return p.op_graph(wl, p.pairs_per_head(wl)), ops, sizes


def _agent(wl: Workload, p: Agent) -> Plan:
    bh, e, n, m, d, dv, a = (wl.batch * wl.q_heads, wl.element_bytes, wl.q_len, wl.kv_len, wl.qk_head_dim,
                             wl.v_head_dim, p.agents)
    sizes = {"agents": bh * a * d * e, "s_agg": bh * a * m * e, "p_agg": bh * a * m * e,
             "v_agents": bh * a * dv * e, "s_bcast": bh * n * a * e, "p_bcast": bh * n * a * e}
    ops = [TorchOp("pool_agents", ("q",), ("agents",)),
           TorchOp("agent_qk", ("agents", "k"), ("s_agg",), (a, d, m)),
           TorchOp("agent_qk", ("s_agg",), ("p_agg",)),
           TorchOp("agent_pv", ("p_agg", "v"), ("v_agents",), (a, m, dv)),
           TorchOp("query_qk", ("q", "agents"), ("s_bcast",), (n, d, a)),
           TorchOp("query_qk", ("s_bcast",), ("p_bcast",)),
           TorchOp("query_pv", ("p_bcast", "v_agents"), ("o",), (n, a, dv))]
    return p.op_graph(wl, p.pairs_per_head(wl)), ops, sizes


def _moba(wl: Workload, p: MoBA) -> Plan:
    bh, e, n, d, dv = wl.batch * wl.q_heads, wl.element_bytes, wl.q_len, wl.qk_head_dim, wl.v_head_dim
    bs, k, blocks = p.block_size, p.top_k, wl.kv_len // p.block_size
    slots = k * bs
    # The runner scores every (query, block) pair and all top_k * block_size slots of every query
    # before masking: the work of the non-causal op graph with that many pairs per query.
    graph = MoBA(bs, k, causal=False).op_graph(wl, n * slots)
    sizes = {"k_pooled": bh * blocks * d * e, "gate": bh * n * blocks * e, "gate_bias": n * blocks * e,
             "top_values": bh * n * k * e, "block_ids": bh * n * k * INDEX_BYTES, "row_offsets": bh * INDEX_BYTES,
             "rows": bh * n * k * INDEX_BYTES, "k_rows": bh * n * slots * d * e, "k_sel": bh * n * slots * d * e,
             "s": bh * n * slots * e, "slot_mask": n * slots * MASK_BYTES, "p": bh * n * slots * e,
             # V is first read by its gather (the pool read K whole before K's gather); decode
             # gathers fewer rows than the graph's compulsory V, which stays charged
             "v_again": max(0, bh * n * slots * dv * e - bh * wl.kv_len * dv * e), "v_sel": bh * n * slots * dv * e}
    causal_mask = [TorchOp("qk", ("s", "slot_mask"), ("s",), masked=bh * n * slots)] if p.causal else []
    ops = [TorchOp("pool_keys", ("k",), ("k_pooled",)),
           TorchOp("gate", ("q", "k_pooled"), ("gate",), (n, d, blocks)),
           TorchOp("top_k", ("gate", "gate_bias"), ("gate",), masked=bh * n * blocks),
           TorchOp("top_k", ("gate",), ("top_values", "block_ids")),
           TorchOp("qk", ("block_ids", "row_offsets"), ("rows",)),
           TorchOp("qk", ("rows", "k_rows"), ("k_sel",)),  # index_select: the picked K blocks
           TorchOp("qk", ("q", "k_sel"), ("s",), (1, d, slots)),
           *causal_mask,
           TorchOp("qk", ("s",), ("p",)),  # softmax
           TorchOp("pv", ("rows", "v", "v_again"), ("v_sel",)),  # index_select: the picked V blocks
           TorchOp("pv", ("p", "v_sel"), ("o",), (1, slots, dv))]
    return graph, ops, sizes


def _linear_rule(wl: Workload, p: Linear) -> str | None:
    if wl.phase == "decode":
        if wl.q_len != 1:
            return "naive-linear: decode runs one new token per call (--decode-tokens 1)"
        if wl.dtype != "fp32":
            return "naive-linear: decode updates attnsim's fp32 state: use --dtype fp32"
    elif p.causal and wl.q_len % p.chunk:
        return "naive-linear: --chunk must divide the sequence (whole chunks)"
    return None


def _agent_rule(wl: Workload, p: Agent) -> str | None:
    if wl.grid is not None and len(wl.grid) > 1:
        return "naive-agent pools a 1D sequence: use --seq, not a --tokens grid"
    if wl.q_len % p.agents:
        return "naive-agent: --agents must divide the queries (equal pooling windows: one add per query element)"
    return None


def _moba_rule(wl: Workload, p: MoBA) -> str | None:
    if wl.kv_len % p.block_size:
        return "naive-moba: --block-size must divide the keys (it gathers whole key blocks)"
    return None


#: kernel -> (pattern class it runs, plan, the shapes it refuses)
KERNELS = {"naive-linear": (Linear, _linear, _linear_rule), "naive-lowrank": (LowRank, _lowrank, lambda wl, p: None),
           "naive-agent": (Agent, _agent, _agent_rule), "naive-moba": (MoBA, _moba, _moba_rule)}


def refusal(kernel: str, wl: Workload, pattern: Pattern) -> str | None:
    """Why ``kernel`` (the runner, and so its work model) cannot run ``pattern`` on ``wl``; None
    when it can. ``pattern.check(wl)`` is the caller's."""
    family, _, rule = KERNELS[kernel]
    if not isinstance(pattern, family):
        return f"--kernel {kernel} prices --pattern {family.name}, not {pattern.name}"
    if wl.phase not in ("fwd", "decode"):
        return f"{kernel} runs the forward pass only, not --phase {wl.phase}"
    if wl.q_heads != wl.kv_heads:
        return f"{kernel}: GQA (--kv-heads < --heads) is not implemented; give --kv-heads = --heads"
    return rule(wl, pattern)


def plan(wl: Workload, pattern: Pattern, kernel: str) -> Plan:
    pattern.check(wl)
    why = refusal(kernel, wl, pattern)
    if why:
        raise AttnsimError(why)
    return KERNELS[kernel][1](wl, pattern)


def features(wl: Workload, pattern: Pattern, kernel: str, hw: Profile) -> dict[str, float]:
    """Work of the busiest thread in one call of ``kernel`` (module docstring)."""
    graph, ops, sizes = plan(wl, pattern, kernel)
    inputs, outputs = tensor_bytes(graph)
    sizes = {**sizes, **inputs, **outputs}
    matmul = {op.name: op.matmul_flops for op in ops_of(graph)}
    first_access = set(inputs) | set(outputs)  # compulsory: counted in "bytes"
    totals = dict.fromkeys(FEATURES, 0)
    for op in ops:
        if op.dims is not None:
            totals["narrow_matmul_flops" if min(op.dims) < NARROW_DIM else "matmul_flops"] += matmul[op.graph_op]
        accessed = op.reads + op.writes
        streamed = 0
        for tensor in accessed:
            if tensor in first_access:
                first_access.discard(tensor)
            else:
                streamed += sizes[tensor]
        working_set = sum(sizes[t] for t in accessed)
        totals["stream_cache_bytes" if fits_in_cache(working_set, hw) else "stream_dram_bytes"] += streamed
        totals["masked_slots"] += op.masked
    # each tensor an op writes is a new allocation: freshly mapped (page faults) from glibc's threshold up
    written = dict.fromkeys(t for op in ops for t in op.writes if t not in inputs)
    totals["fresh_bytes"] = sum(sizes[t] for t in written if sizes[t] >= MMAP_THRESHOLD_BYTES)
    totals["exp"] = sum(op.exp for op in ops_of(graph))
    totals["bytes"] = sum(inputs.values()) + sum(outputs.values())
    share = 1.0 / hw.get("compute_units") if hw.kind == "cpu" else 1.0
    out = {f: v * share for f, v in totals.items()}
    return {**out, "call": 1.0, "tiles": float(len(ops))}


__all__ = ["KERNELS", "NARROW_DIM", "TorchOp", "features", "plan", "refusal"]
