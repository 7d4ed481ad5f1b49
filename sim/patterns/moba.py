"""MoBA: mixture of block attention (Lu et al. 2025, arXiv 2502.13189).

Keys are cut into blocks of ``block_size``. Each query scores every block it may attend against
the block's mean-pooled key, and attends the ``top_k`` best blocks; its own block is always
selected and counts toward ``top_k``. With ``causal``, only blocks up to the query's own are
candidates and the own block is causally masked (queries sit bottom-right, as in decode).

Which blocks win depends on the data, how many never does: a causal query in block ``c``
attends ``min(top_k - 1, c)`` whole history blocks plus its own block up to itself; a
non-causal query attends ``min(top_k, blocks)`` whole blocks. So pairs, FLOPs and bytes are
exact from the parameters, *including the routing*: pooling reads every key once, the gate is a
(queries x blocks) matmul, top-k compares every candidate score. The tile map is
data-dependent, so MoBA has no tile counts; its attention is priced as multi-op kernels.

Backward (``bwd``, ``fwd+bwd``; self-attention only): a FlashAttention-2 backward over the
selected pairs, reading the block ids the forward saved. The gate and top-k are not
differentiated: in MoonshotAI/MoBA (moba/moba_efficient.py) the gate only yields top-k *indices*
(``torch.topk(gate, ...)`` -> ``gate_mask``), so no gradient reaches the mean-pooled keys, and
``MixedAttention.backward`` runs ``_flash_attn_varlen_backward`` twice — the causal own-block
attention and the selected history blocks, both with the merged LSE. Those two calls do the same
five matmuls per selected pair as one fused backward; their extra per-call delta pre-pass and
the scatter-add of the history part's dq/dk/dv into the full gradients are element-wise work not
counted (inferred: a fused kernel computes delta once per query row).

Closed forms (``attnsim formula moba``): with ``q = floor(x / bs)`` and ``r = x - bs q``, the
selected pairs of the causal queries at positions ``[0, x)`` sum, block by block, to
``G(x) = q bs (bs + 1) / 2 + r (r + 1) / 2 + bs (bs (j (j - 1) / 2 + (q - j)(k - 1)) + r min(k - 1, q))``
with ``j = min(q, k - 1)`` (own block up to the query, then ``min(k - 1, c)`` whole history
blocks for a query in block ``c``); bottom-right queries take ``G(M) - G(M - N)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PatternError
from ..workload import Workload
from .backward import attention_backward, phase_ops, require_self_attention
from .base import Pattern
from .opgraph import ID_BYTES, LSE_BYTES, Op, build_graph



@dataclass(frozen=True)
class MoBA(Pattern):
    block_size: int
    top_k: int
    causal: bool = False

    name = "moba"
    tileable = False

    def check(self, wl: Workload) -> None:
        if self.block_size <= 0:
            raise PatternError(f"--block-size must be positive, got {self.block_size}")
        if self.top_k <= 0:
            raise PatternError(f"--top-k must be positive, got {self.top_k}")
        blocks = -(-wl.kv_len // self.block_size)
        if self.top_k > blocks:
            raise PatternError(f"--top-k {self.top_k} exceeds the {blocks} blocks of {self.block_size} keys "
                               f"in {wl.kv_len} keys: use --top-k <= {blocks} or a smaller --block-size")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern moba is for 1D sequences: use --seq, not --tokens")
        require_self_attention(wl, "moba")
        if not self.causal:
            if wl.q_len != wl.kv_len:
                raise PatternError("non-causal --pattern moba needs q_len == kv_len; use --causal for decode")
            if wl.kv_len % self.block_size:
                raise PatternError(f"--block-size {self.block_size} must divide the {wl.kv_len} keys for "
                                   "non-causal moba (which blocks are picked is data-dependent, so a short "
                                   "last block would make the count depend on the data)")

    def layout(self, wl: Workload):
        raise PatternError("moba's mask is data-dependent (top-k blocks): it has no per-dimension layout "
                           "and no tile counts")

    def params(self) -> dict:
        return {"block_size": self.block_size, "top_k": self.top_k, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return ["MoBA: own block always selected and counted in top_k; gate = query x mean-pooled block "
                "keys (every key read once to pool); selected blocks are data-dependent, their number is not",
                "MoBA kernels: pool, gate + top-k, attention over selected blocks (no tile-level model)",
                "MoBA backward: FlashAttention-2 over the selected pairs with the saved block ids; gate and "
                "top-k not differentiated (as MoonshotAI/MoBA)"]

    # -- exact counts from the parameters ------------------------------------------------
    def _positions(self, wl: Workload) -> np.ndarray:
        return np.arange(wl.kv_len - wl.q_len, wl.kv_len, dtype=np.int64)  # bottom-right

    def pairs_per_head(self, wl: Workload) -> int:
        bs, k = self.block_size, self.top_k
        if not self.causal:
            return wl.q_len * min(k, wl.kv_len // bs) * bs
        pos = self._positions(wl)
        own_block = pos // bs
        return int(((pos - own_block * bs + 1) + np.minimum(k - 1, own_block) * bs).sum())

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len  # pooling reads every key

    def candidate_blocks_per_head(self, wl: Workload) -> int:
        """(query, block) gate scores computed: every block up to the own one (causal), or all."""
        blocks = -(-wl.kv_len // self.block_size)
        if not self.causal:
            return wl.q_len * blocks
        return int((self._positions(wl) // self.block_size + 1).sum())

    def mask(self, wl: Workload, rng: np.random.Generator | None = None) -> np.ndarray:
        """One draw of the data-dependent mask: random gate scores, the MoBA selection rule."""
        rng = rng or np.random.default_rng(0)
        bs, blocks = self.block_size, -(-wl.kv_len // self.block_size)
        key_block = np.arange(wl.kv_len) // bs
        out = np.zeros((wl.q_len, wl.kv_len), dtype=bool)
        for i, p in enumerate(self._positions(wl)):
            own = p // bs
            candidates = [b for b in range(own if self.causal else blocks) if b != own]
            scores = rng.standard_normal(len(candidates))
            chosen = {own, *(candidates[j] for j in np.argsort(-scores)[: self.top_k - 1])}
            out[i] = np.isin(key_block, list(chosen))
            if self.causal:
                out[i, p + 1:] = False
        return out

    def op_graph(self, wl: Workload, pairs: int):
        return build_graph(phase_ops(wl, lambda training: _forward(self, wl, pairs, training),
                                     lambda: _backward(self, wl, pairs)))

    # -- closed forms (attnsim formula moba) ------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "MoBA":
        return cls(block_size=1, top_k=1, causal=causal)

    def formula_values(self, wl: Workload) -> dict:
        return {"bs": self.block_size, "k": self.top_k}

    def closed_form(self, sp, sym: dict, phase: str):
        b, h, hkv, n, m, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo"))
        bs, k = sp.symbols("bs k", positive=True, integer=True)
        if self.causal:
            pairs = _causal_pairs_prefix(sp, m, bs, k) - _causal_pairs_prefix(sp, m - n, bs, k)
            gates = _gates_prefix(sp, m, bs) - _gates_prefix(sp, m - n, bs)
            assumes = ("N <= M (queries bottom-right)", "k <= ceil(M / bs)")
        else:
            pairs, gates = n * k * bs, n * m / bs
            assumes = ("N = M", "bs divides M", "k <= M / bs")
        io = e * (b * h * n * d + b * hkv * m * (d + dv)) + eo * b * h * n * dv  # Q, K, V in; O out
        saved = LSE_BYTES * b * h * n + ID_BYTES * b * h * n * k  # LSE and block ids, fwd -> bwd
        fwd = (2 * b * h * (gates * d + pairs * (d + dv)), b * h * pairs, io)
        # backward reads Q, K, V, O, dO, LSE, ids and writes dQ, dK, dV
        bwd = (2 * b * h * pairs * (3 * d + 2 * dv), b * h * pairs, 2 * io + saved)
        matmul, exp, compulsory = {"fwd": fwd, "decode": fwd, "bwd": bwd,
                                   "fwd+bwd": tuple(f + g for f, g in zip(fwd, bwd))}[phase]
        if phase == "fwd+bwd":
            compulsory += saved  # the training forward writes them
        exprs = {"pairs_per_head": pairs, "gate_scores_per_head": gates,
                 "matmul_flops": matmul, "exp": exp, "compulsory_bytes": sp.factor(compulsory)}
        return exprs, {"bs": "MoBA block size", "k": "MoBA top-k blocks (own block included)"}, assumes


def _causal_pairs_prefix(sp, x, bs, k):
    """Selected pairs of causal queries at positions 0 .. x-1 (see the module docstring)."""
    q, r = sp.floor(x / bs), sp.Mod(x, bs)
    j = sp.Min(q, k - 1)
    history_blocks_summed = bs * (j * (j - 1) / 2 + (q - j) * (k - 1)) + r * sp.Min(k - 1, q)
    return q * bs * (bs + 1) / 2 + r * (r + 1) / 2 + bs * history_blocks_summed


def _gates_prefix(sp, x, bs):
    """Gate scores of causal queries at positions 0 .. x-1: a query in block c scores c + 1 blocks."""
    q = sp.floor(x / bs)
    return bs * q * (q - 1) / 2 + sp.Mod(x, bs) * q + x


def _forward(p: MoBA, wl: Workload, pairs: int, training: bool) -> list[Op]:
    e, eo, b = wl.element_bytes, wl.output_bytes, wl.batch
    h, hkv, nq, nkv, d, dv = wl.q_heads, wl.kv_heads, wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
    blocks = -(-nkv // p.block_size)
    gates = b * h * p.candidate_blocks_per_head(wl)
    scores = b * h * pairs
    pooled = b * hkv * blocks * d * e
    ids = b * h * nq * p.top_k * ID_BYTES
    # training: the block ids and the LSE are kept for the backward
    kept_ids, lse = ({"saved_block_ids": ids}, {"lse": b * h * nq * LSE_BYTES}) if training else ({}, {})
    return [
        Op("pool_keys", "pool", other_flops=b * hkv * nkv * d,
           reads={"k": b * hkv * nkv * d * e}, writes={"k_pooled": pooled}),
        Op("gate", "gate", matmul_flops=2 * gates * d, side="qk",
           reads={"q": b * h * nq * d * e, "k_pooled": pooled}, writes={"gate_scores": 0}),
        # top-k: one compare per candidate score, selected block ids to HBM
        Op("top_k", "gate", other_flops=gates, reads={"gate_scores": 0},
           writes={"block_ids": ids, **kept_ids}),
        Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
           per_pair=True, reads={"q": b * h * nq * d * e, "k": b * hkv * nkv * d * e,
                                 "block_ids": ids}, writes={"p": 0}),
        Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
           other_flops=b * h * nq * dv, reads={"p": 0, "v": b * hkv * nkv * dv * e},
           writes={"o": b * h * nq * dv * eo, **lse}),
    ]


def _backward(p: MoBA, wl: Workload, pairs: int) -> list[Op]:
    """FlashAttention-2 backward over the selected pairs; every key is some query's own block, so
    K and V are read (and dK, dV written) whole."""
    e, eo, b, h, hkv = wl.element_bytes, wl.output_bytes, wl.batch, wl.q_heads, wl.kv_heads
    q, o = b * h * wl.q_len * wl.qk_head_dim * e, b * h * wl.q_len * wl.v_head_dim * eo
    k, v = b * hkv * wl.kv_len * wl.qk_head_dim * e, b * hkv * wl.kv_len * wl.v_head_dim * e
    io = {"q": {"q": q}, "k": {"k": k}, "v": {"v": v}, "o": {"o": o}, "do": {"do": o},
          "lse": {"lse": b * h * wl.q_len * LSE_BYTES}, "dq": {"dq": q}, "dk": {"dk": k}, "dv": {"dv": v}}
    ids = {"saved_block_ids": b * h * wl.q_len * p.top_k * ID_BYTES}
    return attention_backward(io, b * h * pairs, b * h * wl.q_len, wl.qk_head_dim, wl.v_head_dim,
                              extra_reads=ids)
