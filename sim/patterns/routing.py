"""Routing Transformer (Roy et al. 2021, TACL; arXiv 2003.05997; github google-research/
google-research ``routing_transformer/utils.py``, and lucidrains/routing-transformer).

Online k-means routing: every head keeps ``clusters`` centroids C; queries and keys are scored
against them (``nearest_neighbor``: x . C^T, 2 N C D FLOPs each). Clusters are balanced by
construction: each centroid takes the ``w = N / clusters`` closest queries and the w closest keys
(``gather_cluster_attention_items``: ``top_k(-dist, k=attention_window)`` over the sequence, then
the indices are sorted into sequence order), so a token may sit in several clusters or in none,
and every count is exact from the parameters. Each cluster is a w x w attention; causal masks
are lower triangles over the sorted slots (``clustered_attention_bias_nd``), w(w+1)/2 pairs.
Outputs are scattered back and averaged over the clusters a query sits in.

Causal language models share queries and keys (``share_qk``: the hparams' default, and
lucidrains' ``shared_qk = causal``): one routing pass, keys = queries, so slot order is sequence
order and the slot-causal mask is exactly causal. Non-causal routes Q and K separately.

Pairs per head: causal clusters x w(w+1)/2, non-causal N w; routing 2 N clusters D per routed
tensor. With clusters = sqrt(N) both are N^1.5 (x D): the paper's O(n^1.5 d). Training adds the
centroid EMA update (the one-hot ``einsum('bnsk,bnsh->nkh')``) and the commitment-loss lookup.

The paper's models mix routing heads with local-attention heads in a layer (PG-19:
``local_num_heads = 6``, ``sparsity_cluster_num_heads = 2``): price the routing heads with
``--pattern routing --heads R`` and the local heads with a local pattern and their own ``--heads``.
The reference decoding recomputes every cluster at each step: ``--phase decode`` is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .backward import attention_backward, phase_ops
from .base import Flag, Pattern
from .flagvals import causal_switch
from .opgraph import Op, build_graph

CENTROID_BYTES = 4  # the means are fp32 variables
INDEX_BYTES = 4
EMA_OPS = 3         # per centroid element: decay, add the batch sum, divide by the count


@dataclass(frozen=True)
class Routing(Pattern):
    clusters: int
    causal: bool = False
    shared_qk: bool | None = None  # None: shared when causal (the reference defaults)

    name = "routing"
    tileable = False
    flags = frozenset({"causal", "clusters"})
    cli_flags = (Flag("clusters", "int", "Routing Transformer: k-means clusters per head; each takes N/clusters "
                      "queries and keys (balanced), e.g. sqrt(N)"),)

    @classmethod
    def from_flags(cls, f: dict) -> "Routing":
        if f.get("clusters") is None:
            raise PatternError("--pattern routing needs --clusters (k-means clusters per head, "
                               "e.g. 64 for 4096 tokens)")
        return cls(f["clusters"], causal_switch(f, "routing"))

    @property
    def shared(self) -> bool:
        return self.causal if self.shared_qk is None else self.shared_qk

    def check(self, wl: Workload) -> None:
        if self.clusters <= 0:
            raise PatternError(f"--clusters must be positive, got {self.clusters}")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern routing is for 1D sequences: use --seq, not --tokens")
        if wl.phase == "decode":
            raise PatternError("--phase decode: the Routing Transformer's decoding recomputes every cluster at each "
                               "step (no incremental kernel); price --phase fwd over the sequence")
        if wl.q_len != wl.kv_len:
            raise PatternError("--pattern routing is self-attention: use --seq without --kv-seq")
        if wl.kv_heads != wl.q_heads:
            raise PatternError("--kv-heads: routing scores keys with each head's own centroids: "
                               "use --kv-heads = --heads")
        if wl.q_len % self.clusters:
            raise PatternError(f"--clusters {self.clusters} must divide the {wl.q_len} tokens: each cluster takes "
                               f"N / clusters tokens (attention_window x clusters = N in every reference config)")

    def layout(self, wl: Workload):
        raise PatternError("routing's clusters are data-dependent: no per-dimension layout and no tile counts")

    def params(self) -> dict:
        return {"clusters": self.clusters, "causal": int(self.causal), "shared_qk": int(self.shared)}

    def assumptions(self, wl: Workload) -> list[str]:
        w = self.window(wl)
        return [f"routing: balanced clusters, each centroid takes its top-{w} queries and keys (w = N / clusters); "
                f"{'shared QK, one routing pass' if self.shared else 'queries and keys routed separately'}; "
                "top-k one compare per score, sorting w indices w ceil(log2 w) compares per cluster",
                "routing kernels: route (scores, top-k, sort), attention over clusters (gather, w x w blocks, "
                "scatter-mean); training adds the centroid EMA update and commitment loss"]

    # -- exact counts ------------------------------------------------------------------
    def window(self, wl: Workload) -> int:
        """Tokens per cluster (the reference's ``attention_window``)."""
        return wl.q_len // self.clusters

    def pairs_per_head(self, wl: Workload) -> int:
        w = self.window(wl)
        return self.clusters * w * (w + 1) // 2 if self.causal else self.clusters * w * w

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len  # every key is scored against the centroids

    def routed(self) -> tuple[str, ...]:
        return ("q",) if self.shared else ("q", "k")

    def op_graph(self, wl: Workload, pairs: int):
        e, eo, b, h, n = wl.element_bytes, wl.output_bytes, wl.batch, wl.q_heads, wl.q_len
        d, dv, c, w = wl.qk_head_dim, wl.v_head_dim, self.clusters, self.window(wl)
        bhn, scores = b * h * n, b * h * pairs
        tensors = {"q": bhn * d * e, "k": bhn * d * e, "v": bhn * dv * e}
        keys = "q" if self.shared else "k"  # shared QK: the keys are the queries
        centroids = {"centroids": h * c * d * CENTROID_BYTES}
        idx = {f"idx_{t}": bhn * INDEX_BYTES for t in self.routed()}
        sort_ops = b * h * c * w * math.ceil(math.log2(w)) if w > 1 else 0

        def route(t: str) -> list[Op]:
            return [Op(f"score_{t}", "route", matmul_flops=2 * bhn * c * d, side="qk",
                       reads={t: tensors[t], **centroids}, writes={f"dist_{t}": 0}),
                    Op(f"top_k_{t}", "route", other_flops=bhn * c + sort_ops, reads={f"dist_{t}": 0},
                       writes={f"idx_{t}": bhn * INDEX_BYTES})]

        def training_ops(t: str) -> list[Op]:
            # EMA update: the one-hot (items x clusters) matmul of the reference, then the blend;
            # commitment loss: the routed centroid of every item, a second one-hot matmul
            return [Op(f"ema_{t}", "centroids", matmul_flops=2 * bhn * c * d, side="qk",
                       other_flops=EMA_OPS * h * c * d, reads={t: tensors[t], f"idx_{t}": bhn * INDEX_BYTES,
                                                               **centroids},
                       writes={"centroids_new": h * c * d * CENTROID_BYTES}),
                    Op(f"commit_{t}", "centroids", matmul_flops=2 * bhn * c * d, side="qk", other_flops=3 * bhn * d,
                       reads={t: tensors[t], f"idx_{t}": bhn * INDEX_BYTES, **centroids}, writes={"loss": 4})]

        def forward(training: bool) -> list[Op]:
            ops = [op for t in self.routed() for op in route(t)]
            lse = {"lse": bhn * 4} if training else {}
            saved = {f"saved_{i}": size for i, size in idx.items()} if training else {}
            ops += [Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
                       per_pair=True, reads={"q": tensors["q"], keys: tensors[keys], **idx}, writes={"p": 0, **saved}),
                    # scatter-mean: each slot's output added to its token, divided by the token's count
                    Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
                       other_flops=2 * bhn * dv, reads={"p": 0, "v": tensors["v"]},
                       writes={"o": bhn * dv * eo, **lse})]
            if training:
                ops += [op for t in self.routed() for op in training_ops(t)]
            return ops

        def backward() -> list[Op]:
            io = {"q": {"q": tensors["q"]}, "k": {keys: tensors[keys]}, "v": {"v": tensors["v"]},
                  "o": {"o": bhn * dv * eo}, "do": {"do": bhn * dv * eo}, "lse": {"lse": bhn * 4},
                  "dq": {"dq": tensors["q"]}, "dk": {"dq" if self.shared else "dk": tensors[keys]},
                  "dv": {"dv": tensors["v"]}}
            saved = {f"saved_{i}": size for i, size in idx.items()}
            # commitment loss gradient 2 (x - mu) / n per routed element, into dq (and dk)
            commit = [Op(f"bwd_commit_{t}", "bwd_centroids", other_flops=3 * bhn * d,
                         reads={t: tensors[t], **saved, **centroids}, writes={f"d{t}": tensors[t]})
                      for t in self.routed()]
            return attention_backward(io, scores, bhn, d, dv, extra_reads=saved) + commit

        return build_graph(phase_ops(wl, forward, backward))

    # -- closed forms ------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Routing":
        if rank != 1:
            raise PatternError("--rank: --pattern routing is 1D (use --rank 1)")
        return cls(clusters=1, causal=causal)

    def closed_form(self, sp, s: dict, phase: str):
        if phase != "fwd":
            raise PatternError(f"--phase {phase}: the closed form covers --phase fwd (attnsim counts bwd and "
                               "fwd+bwd; decode is not modelled)")
        b, h, n, d, dv, e, eo = (s[k] for k in ("B", "H", "N", "D", "Dv", "e", "eo"))
        c = sp.Symbol("c", integer=True, positive=True)
        w = n / c
        pairs = c * w * (w + 1) / 2 if self.causal else c * w * w
        routing = 2 * b * h * n * c * d * len(self.routed())
        key_bytes = 0 if self.shared else e * b * h * n * d
        exprs = {"pairs_per_head": sp.simplify(pairs), "matmul_flops.routing": routing,
                 "matmul_flops": 2 * b * h * (d + dv) * pairs + routing, "exp": b * h * pairs,
                 "compulsory_bytes": e * b * h * n * (d + dv) + key_bytes + eo * b * h * n * dv
                 + CENTROID_BYTES * h * c * d}
        assumes = ("N = M, Hkv = H, c divides N", "shared QK (keys = queries)" if self.shared else "Q, K routed apart")
        return exprs, {"c": "k-means clusters per head (N / c tokens each)"}, assumes

    def formula_values(self, wl: Workload) -> dict:
        return {"c": self.clusters}
