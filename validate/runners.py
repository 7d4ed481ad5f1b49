"""Kernel runners: the real attention kernels attnsim's predictions are checked against.

Each runner says whether it can run a (workload, pattern) on a device — and if not, why — and
builds a zero-argument callable that runs the kernel once on prepared inputs. Building may
compile (FlexAttention) or construct masks; that one-off cost is reported apart from the timing.
Layout everywhere: ``(batch, heads, tokens, head_dim)``, tokens flattened row-major.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from attnsim.patterns import Causal, Dense, Neighborhood, Pattern
from attnsim.workload import Workload

from .masks import dense_mask

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Max |runner - fp32 reference| allowed per input dtype (inputs ~N(0,1), outputs are averages).
TOLERANCE = {"fp32": 2e-4, "bf16": 3e-2, "fp16": 5e-3}


@dataclass
class Inputs:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor


def make_inputs(wl: Workload, device: str, seed: int = 0) -> Inputs:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dtype = TORCH_DTYPES[wl.dtype]

    def t(heads, n, d):
        return torch.randn(wl.batch, heads, n, d, generator=gen).to(device=device, dtype=dtype)

    return Inputs(t(wl.q_heads, wl.q_len, wl.qk_head_dim), t(wl.kv_heads, wl.kv_len, wl.qk_head_dim),
                  t(wl.kv_heads, wl.kv_len, wl.v_head_dim))


REFERENCE_CHUNK_BYTES = 1 << 28  # fp32 scores held at once by the reference (per row chunk)


def reference(wl: Workload, pattern: Pattern, x: Inputs, mask: np.ndarray | None = None) -> torch.Tensor:
    """Masked softmax attention in fp32 with the mask materialised: the ground truth (``mask``:
    a data-dependent pattern's selection on these inputs, per (batch, head) or shared). Rows
    are processed in chunks per head, so the scores never exceed REFERENCE_CHUNK_BYTES.
    Patterns without a (query, key) mask (linear, low-rank, agent): their defining formula."""
    if mask is None:
        from .naive_runners import formula_reference

        formula = formula_reference(wl, pattern, x)
        if formula is not None:
            return formula
    mask = torch.from_numpy(dense_mask(wl, pattern) if mask is None else mask).to(x.q.device)
    groups = wl.q_heads // wl.kv_heads
    out = torch.empty(wl.batch, wl.q_heads, wl.q_len, wl.v_head_dim, device=x.q.device)
    rows = max(1, REFERENCE_CHUNK_BYTES // (4 * wl.kv_len))
    for b in range(wl.batch):
        for h in range(wl.q_heads):
            k, v = x.k[b, h // groups].float(), x.v[b, h // groups].float()
            m = mask[b, h] if mask.dim() == 4 else mask
            for r0 in range(0, wl.q_len, rows):
                scores = (x.q[b, h, r0:r0 + rows].float() @ k.T) * wl.qk_head_dim ** -0.5
                scores = scores.masked_fill(~m[r0:r0 + rows], float("-inf"))
                out[b, h, r0:r0 + rows] = torch.nan_to_num(scores.softmax(-1)) @ v  # fully masked rows -> 0
    return out


class Runner:
    name = ""
    families: tuple[type, ...] = ()  # pattern classes it runs

    def supports(self, wl: Workload, pattern: Pattern, device: str) -> tuple[bool, str]:
        if self.families and not isinstance(pattern, self.families):
            kinds = ", ".join(c.name for c in self.families)
            return False, f"{self.name} runs {kinds} patterns, not {pattern.name}"
        if wl.dtype not in TORCH_DTYPES:
            return False, f"{self.name}: dtype {wl.dtype} has no torch kernel here (use fp32, bf16, fp16)"
        if wl.phase not in ("fwd", "decode"):
            return False, f"{self.name}: only the forward pass is measured (phase {wl.phase})"
        return self._supports(wl, pattern, device)

    def _supports(self, wl: Workload, pattern: Pattern, device: str) -> tuple[bool, str]:
        return True, ""

    def build(self, wl: Workload, pattern: Pattern, x: Inputs) -> Callable[[], torch.Tensor]:
        raise NotImplementedError

    def selection(self, wl: Workload, pattern: Pattern, x: Inputs) -> np.ndarray | None:
        """Data-dependent patterns: the mask this kernel selects on ``x`` (checked against the
        reference under that mask, and its pair count against attnsim's); None: the pattern's."""
        return None


def _is_causal_prefix(wl: Workload, pattern: Pattern) -> bool | None:
    """True/False: SDPA's is_causal; None: SDPA cannot express the pattern without a mask."""
    if isinstance(pattern, Dense):
        return False
    if isinstance(pattern, Causal):
        if wl.q_len == 1:
            return False  # one decode query sees the whole cache
        return True if wl.q_len == wl.kv_len else None  # SDPA aligns top-left, attnsim bottom-right
    return None


class SDPA(Runner):
    """``F.scaled_dot_product_attention`` pinned to one backend."""

    families = (Dense, Causal)

    def __init__(self, backend: str):
        from torch.nn.attention import SDPBackend

        self.backend = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
                        "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]
        self.name = f"sdpa-{backend}"
        self.cuda_only = backend == "efficient"

    def _supports(self, wl, pattern, device):
        if self.cuda_only and device != "cuda":
            return False, f"{self.name} is CUDA-only"
        if _is_causal_prefix(wl, pattern) is None:
            return False, f"{self.name}: SDPA's is_causal is top-left aligned; causal needs q_len == kv_len or 1"
        if self.name == "sdpa-flash" and wl.qk_head_dim != wl.v_head_dim:
            return False, "sdpa-flash needs equal QK and V head dims"
        return True, ""

    def build(self, wl, pattern, x):
        from torch.nn.attention import sdpa_kernel

        causal, gqa = _is_causal_prefix(wl, pattern), wl.q_heads != wl.kv_heads

        def run():
            with sdpa_kernel(self.backend):
                return F.scaled_dot_product_attention(x.q, x.k, x.v, is_causal=causal, enable_gqa=gqa)
        return run


class Unfused(Runner):
    """Matmul, mask, softmax, matmul with the scores materialised: the naive baseline."""

    name = "unfused"

    def _supports(self, wl, pattern, device):
        if pattern.op_graph(wl, 1) is not None:
            return False, f"unfused runs single-mask patterns; {pattern.name} is several ops"
        return True, ""

    def build(self, wl, pattern, x):
        mask = torch.from_numpy(dense_mask(wl, pattern)).to(x.q.device)
        groups, scale = wl.q_heads // wl.kv_heads, wl.qk_head_dim ** -0.5
        k, v = x.k.repeat_interleave(groups, 1), x.v.repeat_interleave(groups, 1)

        def run():
            scores = (x.q @ k.transpose(-1, -2)) * scale
            return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        return run


FLEX_BLOCK = 128


def fresh_compile_cache() -> None:
    """Forget earlier compiled graphs: after ``recompile_limit`` shapes torch.compile silently
    falls back to eager flex_attention (which materialises the scores), so a suite of many
    shapes would time the wrong kernel. Each config compiles afresh (compile time is reported
    apart from the timing)."""
    torch._dynamo.reset()


class Flex(Runner):
    """FlexAttention (compiled) with a BlockMask from the pattern's exact mask."""

    name = "flex"

    def _supports(self, wl, pattern, device):
        if not pattern.tileable:
            return False, f"flex: {pattern.name}'s mask is data-dependent (no static BlockMask)"
        if pattern.op_graph(wl, 1) is not None:
            return False, f"flex runs single-mask patterns; {pattern.name} is several ops"
        if wl.q_len < FLEX_BLOCK and wl.phase != "decode":
            return False, f"flex: fewer than {FLEX_BLOCK} queries (use sdpa or unfused)"
        return True, ""

    def build(self, wl, pattern, x):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        mask = torch.from_numpy(dense_mask(wl, pattern)).to(x.q.device)

        def mask_mod(b, h, q_idx, kv_idx):
            return mask[q_idx, kv_idx]

        block_mask = create_block_mask(mask_mod, None, None, wl.q_len, wl.kv_len, device=x.q.device.type)
        fresh_compile_cache()
        compiled = torch.compile(flex_attention, dynamic=False)
        gqa = wl.q_heads != wl.kv_heads
        return lambda: compiled(x.q, x.k, x.v, block_mask=block_mask, enable_gqa=gqa)


class Natten(Runner):
    """NATTEN's ``na1d/na2d/na3d`` (flex backend on CPU, fused kernels on CUDA)."""

    name = "natten"
    families = (Neighborhood,)

    def __init__(self, compile: bool = True):
        self.compile = compile  # False: eager flex backend (tests; no compile time)

    def _supports(self, wl, pattern, device):
        try:
            import natten  # noqa: F401
        except ImportError:
            return False, "natten: not installed (pip install --no-build-isolation natten==0.21.7)"
        if wl.grid is None:
            return False, "natten: needs a token grid (--tokens)"
        if device == "cpu" and self.compile:  # natten/utils/environment.py: compile needs CUDA cc >= 7.0
            return False, ("natten: compiles its flex backend only on CUDA devices; on CPU it runs eager flex, "
                           "which materialises the scores (use the flex runner: same mask, compiled)")
        if wl.q_heads != wl.kv_heads:
            return False, "natten: GQA is not supported by na*d"
        rank = len(wl.grid)
        window = pattern._per_dim("window", rank)
        if any(k < 2 for k in window) or any(g < 2 for g in wl.grid):
            return False, "natten: windows and extents must be >= 2"
        return True, ""

    def build(self, wl, pattern, x):
        import natten

        rank = len(wl.grid)
        na = {1: natten.na1d, 2: natten.na2d, 3: natten.na3d}[rank]

        def heads_last(t):  # (B, H, N, D) -> (B, *grid, H, D)
            return t.transpose(1, 2).reshape(wl.batch, *wl.grid, t.shape[1], t.shape[-1])

        q, k, v = heads_last(x.q), heads_last(x.k), heads_last(x.v)
        kw = dict(kernel_size=pattern._per_dim("window", rank), dilation=pattern._per_dim("dilation", rank),
                  stride=pattern._per_dim("stride", rank), is_causal=pattern._per_dim("causal", rank))
        if x.q.device.type == "cpu":
            kw["backend"] = "flex-fna"
            kw["torch_compile"] = self.compile
            fresh_compile_cache()

        def run():
            out = na(q, k, v, **kw)
            return out.reshape(wl.batch, wl.q_len, wl.q_heads, wl.v_head_dim).transpose(1, 2)
        return run


def all_runners() -> list[Runner]:
    from .naive_runners import naive_runners
    from .topk_runner import FlexTopK

    return [SDPA("flash"), SDPA("math"), SDPA("efficient"), Flex(), Natten(), Unfused(), FlexTopK(), *naive_runners()]


def build_checked(runner: Runner, wl: Workload, pattern: Pattern, x: Inputs,
                  expected: torch.Tensor) -> tuple[Callable[[], torch.Tensor], float, float]:
    """Build the runner, run it once, and check it against the reference before any timing:
    returns (run, build_s, max_abs_err); raises ValueError when the output is wrong."""
    t0 = time.perf_counter()
    run = runner.build(wl, pattern, x)
    out = run()  # first call compiles (flex): counted as build time, never timed
    build_s = time.perf_counter() - t0
    err = float((out.float() - expected).abs().max())
    tol = TOLERANCE[wl.dtype] * max(1.0, math.sqrt(wl.qk_head_dim / 64))
    if not np.isfinite(err) or err > tol:
        raise ValueError(f"{runner.name}: output differs from the reference by {err:.3g} (> {tol:.3g})")
    return run, build_s, err


__all__ = ["Runner", "SDPA", "Flex", "Natten", "Unfused", "Inputs", "make_inputs", "reference",
           "all_runners", "build_checked"]
