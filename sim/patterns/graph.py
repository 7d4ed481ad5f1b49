"""Attention over an arbitrary graph (Graph Transformers): query i attends key j iff (i, j) is an
edge. The pattern is its edge list, so counts are exact and data-driven: pairs = edges, touched
keys = distinct targets, and 1D block tiles come from the distinct (query block, key block)
pairs the edges fall in — O(E log E), never O(N^2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PatternError
from ..workload import Workload
from .base import Pattern
from .opgraph import LSE_BYTES


@dataclass(frozen=True, eq=False)
class Graph(Pattern):
    edges: np.ndarray = field(repr=False)  # (E, 2) int64: (query, key), unique
    source: str = "edges"

    name = "graph"
    edge_tiled = True

    def __post_init__(self) -> None:
        e = np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)
        object.__setattr__(self, "edges", np.unique(e, axis=0))

    @classmethod
    def from_file(cls, path: str) -> "Graph":
        """Whitespace-separated ``query key`` pairs, one per line (``#`` comments allowed)."""
        try:
            data = np.loadtxt(path, dtype=np.int64, comments="#", ndmin=2)
        except OSError as err:
            raise PatternError(f"--edges {path}: cannot read ({err.strerror or err})") from None
        except ValueError as err:
            raise PatternError(f"--edges {path}: expected two integers per line (query key): {err}") from None
        if data.size and data.shape[1] != 2:
            raise PatternError(f"--edges {path}: expected two integers per line, got {data.shape[1]}")
        return cls(data, Path(path).name)

    @classmethod
    def from_networkx(cls, graph, self_loops: bool = True) -> "Graph":
        """Undirected graphs attend both ways; nodes must be 0..N-1."""
        pairs = list(graph.edges())
        if not graph.is_directed():
            pairs += [(b, a) for a, b in pairs]
        if self_loops:
            pairs += [(n, n) for n in graph.nodes()]
        return cls(np.array(pairs, dtype=np.int64).reshape(-1, 2), "networkx")

    def check(self, wl: Workload) -> None:
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern graph numbers nodes 0..N-1: use --seq N")
        if not len(self.edges):
            raise PatternError("--edges has no edges")
        if self.edges.min() < 0 or self.edges[:, 0].max() >= wl.q_len or self.edges[:, 1].max() >= wl.kv_len:
            raise PatternError(f"--edges node ids must be in 0..{wl.q_len - 1} (queries) and "
                               f"0..{wl.kv_len - 1} (keys): set --seq to the node count")

    def layout(self, wl: Workload):
        raise PatternError("graph attention has no per-dimension layout (its tiles come from the edges)")

    def params(self) -> dict:
        return {"edges": len(self.edges), "source": self.source}

    def pairs_per_head(self, wl: Workload) -> int:
        return len(self.edges)

    def touched_keys(self, wl: Workload) -> int:
        return len(np.unique(self.edges[:, 1]))

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Graph":
        if rank != 1:
            raise PatternError("--rank: --pattern graph numbers nodes 0..N-1 (use --rank 1)")
        return cls(np.zeros((1, 2), dtype=np.int64), "symbolic")  # the forms never read the edges

    def closed_form(self, sp, s: dict, phase: str):
        edges, targets = sp.symbols("E U", integer=True, positive=True)
        meanings = {"E": "edges (query, key) = attended pairs per head", "U": "distinct key ids among the edges"}
        return attention_forms(sp, s, phase, edges, targets), meanings, ()

    def formula_values(self, wl: Workload) -> dict:
        return {"E": len(self.edges), "U": len(np.unique(self.edges[:, 1]))}

    def mask(self, wl: Workload) -> np.ndarray:
        out = np.zeros((wl.q_len, wl.kv_len), dtype=bool)
        out[self.edges[:, 0], self.edges[:, 1]] = True
        return out

    def tile_rows(self, wl: Workload, tq: int, tk: int) -> np.ndarray:
        """Per Q block: AxisTiles-style columns (kv_total, nonempty, full, range, real_full,
        range_real, total_real) for 1D blocks, from the edges."""
        q_blocks, kv_blocks = -(-wl.q_len // tq), -(-wl.kv_len // tk)
        pairs, per_pair = np.unique(self.edges // [tq, tk], axis=0, return_counts=True)
        qb, kb = pairs[:, 0], pairs[:, 1]
        q_size = np.minimum(tq, wl.q_len - qb * tq)
        k_size = np.minimum(tk, wl.kv_len - kb * tk)
        real_full = per_pair == q_size * k_size              # every real pair kept
        full = real_full & (q_size == tq) & (k_size == tk)    # and no padding
        cols = {name: np.bincount(qb, weights=w, minlength=q_blocks).astype(np.int64)
                for name, w in (("nonempty", np.ones(len(qb))), ("full", full), ("real_full", real_full))}
        lo = np.full(q_blocks, kv_blocks, dtype=np.int64)
        hi = np.full(q_blocks, -1, dtype=np.int64)
        np.minimum.at(lo, qb, kb)
        np.maximum.at(hi, qb, kb)
        ranged = np.maximum(hi - lo + 1, 0)  # first to last non-empty KV block
        kv_total = np.full(q_blocks, kv_blocks, dtype=np.int64)
        return np.stack([kv_total, cols["nonempty"], cols["full"], ranged, cols["real_full"], ranged,
                         kv_total], axis=1)


def attention_forms(sp, s: dict, phase: str, pairs, touched) -> dict:
    """Closed forms of one fused attention kernel as ``attnsim.counting`` counts it over ``pairs``
    (query, key) pairs per head and ``touched`` keys per KV head (each read once): a graph's E and U.
    Every mask pattern is such a graph, so its forms are these with its own pairs and touched keys."""

    b, h, hkv, n, d, dv, e, eo = (s[k] for k in ("B", "H", "Hkv", "N", "D", "Dv", "e", "eo"))
    q, kv, o, lse = e * b * h * n * d, e * b * hkv * touched * (d + dv), eo * b * h * n * dv, LSE_BYTES * b * h * n
    # FlashAttention-2 backward: S, dQ, dK contract over D (3x), dV, dP over Dv (2x); it reads
    # Q, K, V, O, dO, LSE and writes dQ, dK, dV. fwd+bwd adds the forward, which writes LSE.
    contraction, exp_passes, compulsory = {
        "fwd": (d + dv, 1, q + kv + o), "decode": (d + dv, 1, q + kv + o),
        "bwd": (3 * d + 2 * dv, 1, 2 * (q + kv) + 2 * o + lse),
        "fwd+bwd": (4 * d + 3 * dv, 2, 3 * (q + kv) + 3 * o + 2 * lse)}[phase]
    return {"pairs_per_head": pairs, "touched_keys": touched, "matmul_flops": 2 * b * h * contraction * pairs,
            "exp": exp_passes * b * h * pairs, "compulsory_bytes": compulsory}
