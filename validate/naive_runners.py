"""Naive torch runners for the multi-op patterns: linear, low-rank (Linformer), agent and MoBA.

Each runs its pattern's algorithm as attnsim's op graph counts it, one torch op after another,
every intermediate round-tripping through memory (``attnsim.hwmodels.opgraphcost`` models
exactly these ops; keep the two in step). Before timing, the output is checked against an
independent fp32 reference: :func:`formula_reference` for linear, low-rank and agent attention
(their defining formula on another code path: the quadratic form, per-head loops, the masked
softmax ``reference``), and for MoBA the masked-softmax reference under the blocks the runner
selected (``selection``), whose pair count must equal attnsim's.

Layout ``(batch, heads, tokens, head_dim)``. GQA is refused: a naive port would repeat K and V
per query head (a copy attnsim's op graphs do not count) or share per-KV-head work the graphs
count per query head (linear attention's state, Linformer's projections).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from attnsim.errors import PatternError
from attnsim.hwmodels.opgraphcost import refusal
from attnsim.patterns import Agent, Dense, Linear, LowRank, MoBA, Pattern
from attnsim.workload import Workload

from .runners import REFERENCE_CHUNK_BYTES, Inputs, Runner, reference

PROJECTION_SEED = 2006_04768  # Linformer's E and F (arXiv id): runner and reference draw the same


def linear_feature_scales(wl: Workload) -> tuple[float, float]:
    """The feature map, one multiply per Q and K element as attnsim counts: ``phi(q) = q/sqrt(D)``
    (flash-linear-attention's default ``scale``, fla/ops/linear_attn/naive.py) and ``phi(k) =
    k/sqrt(M)`` (inferred: a constant normaliser that keeps the unnormalised sums over M keys
    O(1), so the fp32 check's absolute tolerance holds at every length)."""
    return wl.qk_head_dim ** -0.5, wl.kv_len ** -0.5


def linformer_projections(wl: Workload, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded fp32 ``E``, ``F`` of shape (rank, M), entries N(0, 1/M) so ``E K`` keeps K's scale
    (inferred; lucidrains/linformer draws U(-1/sqrt(rank), 1/sqrt(rank)))."""
    gen = torch.Generator().manual_seed(PROJECTION_SEED)
    e, f = (torch.randn(rank, wl.kv_len, generator=gen) * wl.kv_len ** -0.5 for _ in range(2))
    return e, f


def _scores(a: torch.Tensor, b: torch.Tensor, scale: float, zero: torch.Tensor) -> torch.Tensor:
    """``scale * a @ b^T`` per (batch, head) in one op: baddbmm's alpha applies the softmax scale
    inside the product (Agent Attention scales an operand instead: same values, one pass more)."""
    s = torch.baddbmm(zero, a.flatten(0, 1), b.flatten(0, 1).transpose(1, 2), beta=0, alpha=scale)
    return s.view(*a.shape[:2], *s.shape[1:])


class NaiveRunner(Runner):
    """The shapes a naive runner refuses are its work model's (hwmodels.opgraphcost.refusal)."""

    def _supports(self, wl, pattern, device):
        try:
            pattern.check(wl)
        except PatternError as err:
            return False, f"{self.name}: {err}"
        why = refusal(self.name, wl, pattern)
        return (False, why) if why else (True, "")


class NaiveLinear(NaiveRunner):
    """Linear attention (attnsim ``Linear``). Causal prefill in chunks of C, vectorised over the
    chunks as fla's ``naive_chunk_linear_attn``: intra-chunk ``(phi(Q_c) phi(K_c)^T * mask) V_c``,
    each chunk's ``phi(K_c)^T V_c``, their exclusive prefix sum (the state before each chunk;
    chunk 0 reads a zero state), then ``+= phi(Q_c) H``. Non-causal: ``phi(Q) (phi(K)^T V)``.
    Decode: one token, ``H = H_in + phi(k)^T v`` (rank 1, fp32 state), ``o = phi(q) H``."""

    name = "naive-linear"
    families = (Linear,)

    def build(self, wl, p, x):
        sq, sk = linear_feature_scales(wl)
        if wl.phase == "decode":
            return self._decode(wl, x, sq, sk)
        if not p.causal:
            def run():
                phi_q, phi_k = x.q * sq, x.k * sk                   # feature_map
                state = torch.matmul(phi_k.transpose(-1, -2), x.v)  # state: D x Dv per head
                return torch.matmul(phi_q, state)                   # readout
            return run
        b, h, n, d, dv, c = wl.batch, wl.q_heads, wl.q_len, wl.qk_head_dim, wl.v_head_dim, p.chunk
        bh, chunks = b * h, n // c
        upper = torch.ones(c, c, dtype=torch.bool, device=x.q.device).triu(1)
        # the state before each chunk; slot 0 stays zero (the first chunk has no history)
        states = torch.zeros(bh, chunks, d, dv, dtype=x.q.dtype, device=x.q.device)
        v = x.v.reshape(bh * chunks, c, dv)

        def run():
            phi_q = (x.q * sq).view(bh * chunks, c, d)                 # feature_map
            phi_k = (x.k * sk).view(bh * chunks, c, d)
            s = torch.bmm(phi_q, phi_k.transpose(1, 2))                 # intra_qk: C x C per chunk
            s.masked_fill_(upper, 0)                                    # intra_pv: causal inside the chunk
            o = torch.bmm(s, v)                                         # intra_pv
            kv = torch.bmm(phi_k.transpose(1, 2), v).view(bh, chunks, d, dv)  # state_update: K_c^T V_c
            torch.cumsum(kv[:, :-1], 1, out=states[:, 1:])              # state_update: exclusive prefix
            return torch.baddbmm(o, phi_q, states.view(bh * chunks, d, dv)).view(b, h, n, dv)  # inter
        return run

    def _decode(self, wl, x, sq, sk):
        """The cache's first M-1 tokens become the state H_in (at build, untimed); the last one is
        the new token."""
        b, h, d, dv = wl.batch, wl.q_heads, wl.qk_head_dim, wl.v_head_dim
        state_in = torch.matmul((x.k[:, :, :-1] * sk).transpose(-1, -2), x.v[:, :, :-1]).reshape(b * h, d, dv)
        q, k, v = (t[:, :, -1:].reshape(b * h, 1, t.shape[-1]).contiguous() for t in (x.q, x.k, x.v))

        def run():
            phi_q, phi_k = q * sq, k * sk                                   # feature_map
            state = torch.baddbmm(state_in, phi_k.transpose(1, 2), v)       # state_update (rank 1)
            return torch.bmm(phi_q, state).view(b, h, 1, dv)                # readout
        return run


class NaiveLowRank(NaiveRunner):
    """Linformer (attnsim ``LowRank``, arXiv 2006.04768 eq. 7): ``K' = E K``, ``V' = F V`` with one
    seeded (rank x M) E and F shared by every head, then softmax attention over the rank rows —
    as lucidrains/linformer's ``LinformerSelfAttention.forward``."""

    name = "naive-lowrank"
    families = (LowRank,)

    def build(self, wl, p, x):
        e, f = (t.to(x.k.device, x.k.dtype) for t in linformer_projections(wl, p.rank))
        zero, scale = torch.zeros((), dtype=x.q.dtype, device=x.q.device), wl.qk_head_dim ** -0.5

        def run():
            k_proj = torch.matmul(e, x.k)                                   # project_k: rank x D per head
            v_proj = torch.matmul(f, x.v)                                   # project_v
            probs = _scores(x.q, k_proj, scale, zero).softmax(-1)           # qk: N x rank
            return torch.matmul(probs, v_proj)                              # pv
        return run


class NaiveAgent(NaiveRunner):
    """Agent attention (attnsim ``Agent``, arXiv 2312.08874; LeapLabTHU/Agent-Attention
    ``AgentAttention.forward`` without its position biases and depthwise convolution, which
    attnsim does not count): agents = mean of equal windows of queries, ``V_A = softmax(A K^T) V``,
    ``O = softmax(Q A^T) V_A``."""

    name = "naive-agent"
    families = (Agent,)

    def build(self, wl, p, x):
        a, n = p.agents, wl.q_len
        zero, scale = torch.zeros((), dtype=x.q.dtype, device=x.q.device), wl.qk_head_dim ** -0.5

        def run():
            agents = x.q.unflatten(2, (a, n // a)).mean(3)                  # pool_agents
            p_agg = _scores(agents, x.k, scale, zero).softmax(-1)           # agent_qk: A x M
            v_agents = torch.matmul(p_agg, x.v)                             # agent_pv
            p_bcast = _scores(x.q, agents, scale, zero).softmax(-1)         # query_qk: N x A
            return torch.matmul(p_bcast, v_agents)                          # query_pv
        return run


class NaiveMoBA(NaiveRunner):
    """MoBA (attnsim ``MoBA``, arXiv 2502.13189): mean-pool each key block, gate = every query x
    pooled block, own block +inf and (causal) later blocks -inf as MoonshotAI/MoBA's
    ``moba_attn_varlen_naive``, top-k block ids, then attention over the selected blocks only:
    each query's k blocks are gathered (index_select) and scored as one row (the official naive
    code masks a dense N x N score matrix instead). Every query computes all ``top_k * block``
    slots; the causal ones after it in its own block, and the slots of early queries with fewer
    than top_k - 1 earlier blocks, are masked before the softmax."""

    name = "naive-moba"
    families = (MoBA,)

    def _static(self, wl, p, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gate bias (N, blocks), masked slots (N, top_k * block)), data-independent."""
        bs, k, blocks, dev = p.block_size, p.top_k, wl.kv_len // p.block_size, like.device
        pos = torch.arange(wl.kv_len - wl.q_len, wl.kv_len, device=dev)  # queries sit bottom-right
        own, block = (pos // bs)[:, None], torch.arange(blocks, device=dev)[None, :]
        bias = torch.zeros(wl.q_len, blocks, dtype=like.dtype, device=dev).masked_fill(block == own, math.inf)
        slot = torch.arange(k, device=dev)[None, :, None]
        offset = torch.arange(bs, device=dev)[None, None, :]
        masked = torch.zeros(wl.q_len, k, bs, dtype=torch.bool, device=dev)
        if p.causal:
            bias.masked_fill_(block > own, -math.inf)
            # slot 0 is the own block (the only +inf): keys after the query; slots beyond the
            # query's own + earlier blocks hold -inf picks (future blocks)
            masked = (slot > own[:, :, None]) | ((slot == 0) & (offset > (pos % bs)[:, None, None]))
        return bias, masked.reshape(wl.q_len, k * bs)

    def _route(self, wl, p, x, bias):
        blocks = wl.kv_len // p.block_size
        pooled = x.k.unflatten(2, (blocks, p.block_size)).mean(3)          # pool_keys
        gate = torch.matmul(x.q, pooled.transpose(-1, -2))                  # gate: every (query, block)
        gate.add_(bias)                                                     # top_k: own first, future last
        return gate.topk(p.top_k, dim=-1).indices                           # top_k (sorted)

    def selection(self, wl, p, x) -> np.ndarray:
        """(batch, heads, q_len, kv_len): the keys each query attends under its own routing."""
        bias, masked = self._static(wl, p, x.q)
        picks = self._route(wl, p, x, bias)
        valid = ~masked.view(wl.q_len, p.top_k, p.block_size).all(-1)       # (N, k): slot has a key
        blocks = torch.zeros(*picks.shape[:-1], wl.kv_len // p.block_size, dtype=torch.bool, device=picks.device)
        blocks.scatter_(-1, picks, valid.expand_as(picks))                  # picks are distinct per query
        keys = blocks.repeat_interleave(p.block_size, -1)
        if p.causal:
            pos = torch.arange(wl.kv_len - wl.q_len, wl.kv_len, device=keys.device)
            keys &= torch.arange(wl.kv_len, device=keys.device)[None, :] <= pos[:, None]
        return keys.cpu().numpy()

    def build(self, wl, p, x):
        bias, masked = self._static(wl, p, x.q)
        b, h, n, d, dv, bs, k = wl.batch, wl.q_heads, wl.q_len, wl.qk_head_dim, wl.v_head_dim, p.block_size, p.top_k
        bh, blocks, slots = b * h, wl.kv_len // bs, k * bs
        offsets = (torch.arange(bh, device=x.q.device) * blocks).view(b, h, 1, 1)
        k_blocks, v_blocks = x.k.reshape(bh * blocks, bs * d), x.v.reshape(bh * blocks, bs * dv)
        q_rows = x.q.reshape(bh * n, 1, d)
        zero, scale = torch.zeros((), dtype=x.q.dtype, device=x.q.device), d ** -0.5

        def run():
            rows = (self._route(wl, p, x, bias) + offsets).view(-1)         # qk: block rows of all heads
            k_sel = k_blocks.index_select(0, rows).view(bh * n, slots, d)   # qk: gather the picked K blocks
            s = torch.baddbmm(zero, q_rows, k_sel.transpose(1, 2), beta=0, alpha=scale)  # qk: 1 x k*bs
            if p.causal:
                s.view(bh, n, slots).masked_fill_(masked, -math.inf)        # qk
            probs = s.softmax(-1)                                           # qk
            v_sel = v_blocks.index_select(0, rows).view(bh * n, slots, dv)  # pv: gather the picked V blocks
            return torch.bmm(probs, v_sel).view(b, h, n, dv)                # pv
        return run


def naive_runners() -> list[Runner]:
    return [NaiveLinear(), NaiveLowRank(), NaiveAgent(), NaiveMoBA()]


# -- independent fp32 references -------------------------------------------------------------
def formula_reference(wl: Workload, pattern: Pattern, x: Inputs) -> torch.Tensor | None:
    """The output by the pattern's defining formula, for patterns without a (query, key) mask;
    None for the others (their reference is masked softmax attention)."""
    if isinstance(pattern, Linear):
        return _linear_reference(wl, pattern, x)
    if isinstance(pattern, LowRank):
        return _lowrank_reference(wl, pattern, x)
    if isinstance(pattern, Agent):
        return _agent_reference(wl, pattern, x)
    return None


def _linear_reference(wl: Workload, p: Linear, x: Inputs) -> torch.Tensor:
    """The quadratic form ``((phi(Q) phi(K)^T) * mask) V`` in row chunks per head: no chunks, no
    state (decode: the new query sees the whole cache)."""
    sq, sk = linear_feature_scales(wl)
    out = torch.empty(wl.batch, wl.q_heads, wl.q_len, wl.v_head_dim, device=x.q.device)
    rows, keys = max(1, REFERENCE_CHUNK_BYTES // (4 * wl.kv_len)), torch.arange(wl.kv_len, device=x.q.device)
    for b in range(wl.batch):
        for h in range(wl.q_heads):
            k, v = x.k[b, h].float() * sk, x.v[b, h].float()
            for r0 in range(0, wl.q_len, rows):
                weights = (x.q[b, h, r0:r0 + rows].float() * sq) @ k.T
                if p.causal:
                    pos = torch.arange(r0, r0 + len(weights), device=keys.device) + wl.kv_len - wl.q_len
                    weights = weights * (keys[None, :] <= pos[:, None])
                out[b, h, r0:r0 + rows] = weights @ v
    return out


def _lowrank_reference(wl: Workload, p: LowRank, x: Inputs) -> torch.Tensor:
    """Project per head, then masked-softmax attention of the queries over the rank rows."""
    e, f = (t.to(x.k.dtype).float().to(x.k.device) for t in linformer_projections(wl, p.rank))
    k_proj = torch.stack([torch.stack([e @ x.k[b, h].float() for h in range(wl.kv_heads)])
                          for b in range(wl.batch)])
    v_proj = torch.stack([torch.stack([f @ x.v[b, h].float() for h in range(wl.kv_heads)])
                          for b in range(wl.batch)])
    return reference(wl.with_(kv_len=p.rank, grid=None), Dense(), Inputs(x.q, k_proj, v_proj))


def _agent_reference(wl: Workload, p: Agent, x: Inputs) -> torch.Tensor:
    """Agents by adaptive average pooling (equal windows when A divides N), then the two softmax
    attentions by the masked-softmax reference."""
    q = x.q.float()
    agents = F.adaptive_avg_pool1d(q.flatten(0, 1).transpose(1, 2), p.agents).transpose(1, 2)
    agents = agents.reshape(wl.batch, wl.q_heads, p.agents, wl.qk_head_dim)
    v_agents = reference(wl.with_(q_len=p.agents, grid=None), Dense(), Inputs(agents, x.k, x.v))
    return reference(wl.with_(kv_len=p.agents, grid=None), Dense(), Inputs(q, agents, v_agents))


__all__ = ["NaiveLinear", "NaiveLowRank", "NaiveAgent", "NaiveMoBA", "naive_runners", "formula_reference",
           "linear_feature_scales", "linformer_projections"]
