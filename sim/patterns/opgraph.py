"""Multi-op attention variants as a networkx graph of ops and the tensors they move.

A mask pattern is one fused kernel; variants such as MLA (latent KV, absorbed weights) or block
top-k routing (pooling, gating, top-k, then sparse attention) are several ops, some fused into
one kernel. Each op node carries its FLOPs and the tensors it reads and writes; an edge runs
from the op writing a tensor to each op reading it. Two byte counts follow from the graph:
*compulsory* traffic reads each graph input once and writes each graph output once (tensors
made and consumed inside the graph stay on chip in an ideal implementation), *kernel* traffic
also round-trips every tensor passed between different kernels through HBM.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

LSE_BYTES = 4  # fp32 log-sum-exp per softmax row, saved by a forward for its backward
ID_BYTES = 4   # int32 index (a selected key, block or head)


@dataclass(frozen=True)
class Op:
    name: str
    kernel: str                    # ops of one kernel are fused: their tensors stay on chip
    matmul_flops: int = 0
    side: str = "qk"               # "qk" (contracts over the QK head dim) or "pv"
    exp: int = 0
    other_flops: int = 0
    per_pair: bool = False         # FLOPs proportional to the attended pairs (score-side ops)
    reads: dict[str, int] = field(default_factory=dict)   # tensor -> bytes
    writes: dict[str, int] = field(default_factory=dict)


def build_graph(ops: list[Op]) -> nx.DiGraph:
    """Ops in execution order; edges from each tensor's writer to its readers."""
    import networkx as nx  # only multi-op patterns need it: keeps `import attnsim` light

    graph = nx.DiGraph()
    writer: dict[str, str] = {}
    for op in ops:
        graph.add_node(op.name, op=op)
        for tensor in op.reads:
            if tensor in writer:
                graph.add_edge(writer[tensor], op.name, tensor=tensor)
        for tensor in op.writes:
            writer[tensor] = op.name
    # counting asks for the ops in order several times per graph: sort once (graphs are not
    # changed after they are built); the sort also proves the graph acyclic
    try:
        graph.graph["ops"] = tuple(graph.nodes[n]["op"] for n in nx.topological_sort(graph))
    except nx.NetworkXUnfeasible:  # pragma: no cover - construction is ordered
        raise ValueError("op graph has a cycle") from None
    return graph


def ops_of(graph: nx.DiGraph) -> list[Op]:
    return list(graph.graph["ops"])


def tensor_bytes(graph: nx.DiGraph) -> tuple[dict[str, int], dict[str, int]]:
    """(graph inputs, graph outputs): tensors read but never written, written but never read."""
    ops = ops_of(graph)
    written = {t: b for op in ops for t, b in op.writes.items()}
    read = {t: b for op in ops for t, b in op.reads.items()}
    inputs = {t: b for t, b in read.items() if t not in written}
    outputs = {t: b for t, b in written.items() if t not in read}
    return inputs, outputs


def kernel_traffic_bytes(graph: nx.DiGraph) -> int:
    """Bytes moved when every kernel reads its inputs from and writes its outputs to HBM: a
    read counts unless the tensor's writer is in the same kernel; a write counts if the graph
    outputs it or another kernel reads it."""
    ops = ops_of(graph)
    kernel_of_writer = {t: op.kernel for op in ops for t in op.writes}
    reader_kernels: dict[str, set[str]] = {}
    for op in ops:
        for t in op.reads:
            reader_kernels.setdefault(t, set()).add(op.kernel)
    total = 0
    for op in ops:
        total += sum(b for t, b in op.reads.items() if kernel_of_writer.get(t) != op.kernel)
        total += sum(b for t, b in op.writes.items() if reader_kernels.get(t, {None}) - {op.kernel})
    return total


def kernels(graph: nx.DiGraph) -> list[str]:
    return list(dict.fromkeys(op.kernel for op in ops_of(graph)))
