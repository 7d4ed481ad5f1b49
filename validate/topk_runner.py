"""Block-sparse top-k on FlexAttention: route each query block (mean-pooled queries x keys,
top-k, own block always), build the BlockMask from the chosen block indices, run compiled
flex_attention — routing and BlockMask construction inside the timed call, as a real kernel
pays them."""
from __future__ import annotations

import numpy as np
import torch

from attnsim.patterns import BlockTopK

from .runners import Runner, fresh_compile_cache


class FlexTopK(Runner):
    name = "flex-topk"
    families = (BlockTopK,)

    def _supports(self, wl, pattern, device):
        if wl.q_len % pattern.block_size:
            return False, "flex-topk: --block-size must divide the sequence (whole query blocks)"
        return True, ""

    def _route(self, wl, pattern, x):
        """(kv_num_blocks, kv_indices, full_num_blocks, full_indices) per (batch, head, q block)."""
        b, blocks, k = pattern.block_size, pattern.blocks(wl), pattern.top_k
        groups = wl.q_heads // wl.kv_heads
        pooled_q = x.q.unflatten(2, (blocks, b)).mean(3)
        pooled_k = x.k.unflatten(2, (blocks, b)).mean(3).repeat_interleave(groups, 1)
        gate = pooled_q @ pooled_k.transpose(-1, -2)
        own = torch.eye(blocks, dtype=torch.bool, device=gate.device)
        if pattern.causal:
            future = torch.ones(blocks, blocks, dtype=torch.bool, device=gate.device).triu(1)
            gate = gate.masked_fill(future | own, float("-inf"))  # history candidates only
            hist = min(k - 1, blocks - 1)
            picks = gate.topk(hist, dim=-1).indices if hist else gate[..., :0].long()
            counts = torch.clamp(torch.arange(blocks, device=gate.device), max=k - 1)
            valid = torch.arange(hist, device=gate.device) < counts[:, None]
            full_idx = torch.where(valid, picks, 0).to(torch.int32)
            full_num = counts.to(torch.int32).expand(gate.shape[:-1]).contiguous()
            diag = torch.arange(blocks, dtype=torch.int32, device=gate.device)
            part_idx = diag.view(1, 1, blocks, 1).expand(*gate.shape[:-1], 1).contiguous()
            part_num = torch.ones(gate.shape[:-1], dtype=torch.int32, device=gate.device)
            return part_num, _pad(part_idx, blocks), full_num.contiguous(), _pad(full_idx, blocks)
        gate = gate.masked_fill(own, float("inf"))  # own block always selected
        picks = gate.topk(k, dim=-1).indices.to(torch.int32)
        empty = torch.zeros(*gate.shape[:-1], blocks, dtype=torch.int32, device=gate.device)
        return (torch.zeros(gate.shape[:-1], dtype=torch.int32, device=gate.device), empty,
                torch.full(gate.shape[:-1], k, dtype=torch.int32, device=gate.device), _pad(picks, blocks))

    def selection(self, wl, pattern, x) -> np.ndarray:
        """(batch, heads, q_len, kv_len): each head's chosen blocks (its own routing)."""
        part_num, part_idx, full_num, full_idx = self._route(wl, pattern, x)
        b, blocks = pattern.block_size, pattern.blocks(wl)
        slot = torch.arange(blocks, device=part_idx.device)
        hits = torch.zeros(*part_num.shape, blocks, dtype=torch.int32, device=part_idx.device)
        for num, idx in ((part_num, part_idx), (full_num, full_idx)):  # padding slots add 0
            hits.scatter_add_(-1, idx.long(), (slot < num.unsqueeze(-1)).int())
        sel = hits > 0
        mask = sel.repeat_interleave(b, -2).repeat_interleave(b, -1).cpu().numpy()
        return mask & np.tril(np.ones(mask.shape[-2:], dtype=bool)) if pattern.causal else mask

    def build(self, wl, pattern, x):
        from torch.nn.attention.flex_attention import BlockMask, flex_attention

        b = pattern.block_size

        def causal(bb, h, q_idx, kv_idx):
            return q_idx >= kv_idx

        fresh_compile_cache()
        compiled = torch.compile(flex_attention, dynamic=False)
        gqa = wl.q_heads != wl.kv_heads

        def run():
            part_num, part_idx, full_num, full_idx = self._route(wl, pattern, x)
            mask = BlockMask.from_kv_blocks(part_num, part_idx, full_num, full_idx, BLOCK_SIZE=b,
                                            mask_mod=causal if pattern.causal else None,
                                            seq_lengths=(wl.q_len, wl.kv_len))
            return compiled(x.q, x.k, x.v, block_mask=mask, enable_gqa=gqa)
        return run


def _pad(indices: torch.Tensor, blocks: int) -> torch.Tensor:
    """BlockMask index tensors have one slot per KV block (unused slots are ignored)."""
    pad = blocks - indices.shape[-1]
    return torch.nn.functional.pad(indices, (0, pad)).contiguous() if pad > 0 else indices.contiguous()
