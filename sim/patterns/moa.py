"""MoA, Mixture of Sparse Attention (Fu et al. 2024, arXiv 2406.14909; github thu-nics/MoA).

Every head keeps its own sliding window plus the first ``sinks`` tokens (StreamingLLM's attention
sinks). MoA's search picks a window per head, elastic in the length: the repository's
``moa_config_to_cache_config`` (MoA/attention/cache_utils.py) sizes head h's KV cache as
``ceil(max(min(int(alpha_h + beta_h N), N), 128) / 64) * 64`` tokens for N = prompt + new tokens,
of which ``min(cache, 64)`` are sinks and the rest the window (:func:`elastic_windows`). Here
``--windows`` gives the resolved windows (tokens, the query's own key included) and ``--sinks``
the sink tokens (default 64, MoA's ``sink_size``).

The kernels differ by phase, and the counts follow each:

* prefill (``--phase fwd``, MoA/kernels/block_sparse_attention_prefill.py): 64-token blocks.
  Query block m reads key blocks ``b <= min(sinks/64 - 1, m)`` and ``m + 1 - window/64 <= b <= m``,
  causally masked per token: query i keeps ``i + 1 - 64 max(0, m - window/64 - sinks/64 + 1)``
  keys (whole skipped blocks lie before it). Windows and sinks must be multiples of 64.
* decode (the CUDA ``moa_decode`` over MoA's circular cache): token level, each new token reads its
  head's sinks and its last ``window`` tokens, i.e. ``--pattern sinks`` per head.

Heads differ, so the pattern is priced as one attention op per distinct window (one kernel for
all heads): FLOPs, exponentials and bytes are exact sums over heads. ``pairs_per_head`` is their
mean over the heads (exact when it is an integer, else rounded down and the exact total is given
in the assumptions). Per-head windows have no single tile map: no tile counts, roofline only.
MoA is a post-training method (its kernels are inference-only): no backward.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .base import Flag, Pattern
from .opgraph import Op, build_graph
from .sinks import Sinks

BLOCK = 64          # BLOCK_M = BLOCK_N of MoA's prefill kernels (MoA/kernels/mixture_of_attention.py)
SINK_TOKENS = 64    # sink_size of moa_config_to_cache_config
MIN_CACHE = 128     # minimum_cache_size
CACHE_SPLIT = 64    # split_size: every head's cache is a multiple of this


def elastic_windows(alphas, betas, tokens: int) -> tuple[int, ...]:
    """Per-head windows MoA uses for ``tokens`` = prompt + new tokens (moa_config_to_cache_config):
    cache = ceil(max(min(int(alpha + beta tokens), tokens), 128) / 64) 64, window = cache - sinks."""
    windows = []
    for alpha, beta in zip(alphas, betas, strict=True):
        cache = min(int(alpha + tokens * beta), tokens)
        cache = math.ceil(max(cache, MIN_CACHE) / CACHE_SPLIT) * CACHE_SPLIT
        windows.append(cache - min(cache, SINK_TOKENS))
    return tuple(windows)


def parse_windows(text) -> tuple[int, ...]:
    try:
        windows = tuple(int(p) for p in str(text).split(","))
    except ValueError:
        raise PatternError(f"--windows {text!r}: expected comma-separated positive integers, e.g. 2048,4096") from None
    if not windows or min(windows) <= 0:
        raise PatternError(f"--windows {text!r}: every window must be a positive number of tokens")
    return windows


def prefill_pairs(n: int, window: int, sinks: int) -> int:
    """Keys kept by the n queries of one head of the 64-block prefill kernel."""
    skip_after = window // BLOCK + sinks // BLOCK - 1  # blocks m > this skip m - this whole blocks
    full_blocks, tail = divmod(n, BLOCK)
    u = max(full_blocks - skip_after, 0)
    skipped_blocks = BLOCK * u * (u - 1) // 2 + tail * u  # sum over queries of skipped blocks
    return n * (n + 1) // 2 - BLOCK * skipped_blocks


@dataclass(frozen=True)
class MoA(Pattern):
    windows: tuple[int, ...]
    sinks: int = SINK_TOKENS

    name = "moa"
    causal = True  # causal by construction: full causal attention is the baseline to compare with
    tileable = False
    flags = frozenset({"windows", "sinks"})
    cli_flags = (Flag("windows", "str", "window per head in tokens, comma-separated (length = --heads, or a "
                      "divisor of it: the list repeats over the heads), e.g. 2048,4096"),)

    @classmethod
    def from_flags(cls, f: dict) -> "MoA":
        if f.get("windows") is None:
            raise PatternError("--pattern moa needs --windows (one window per head, e.g. 2048,4096,8192,1024)")
        return cls(parse_windows(f["windows"]), f["sinks"] if f.get("sinks") is not None else SINK_TOKENS)

    def check(self, wl: Workload) -> None:
        if not self.windows or min(self.windows) <= 0 or self.sinks < 0:
            raise PatternError("--windows must be positive token counts and --sinks >= 0")
        if wl.q_heads % len(self.windows):
            raise PatternError(f"--windows has {len(self.windows)} entries for {wl.q_heads} heads: give one per head "
                               "or a list whose length divides --heads (it repeats over the heads)")
        if wl.kv_heads != wl.q_heads:
            raise PatternError("--kv-heads: MoA's kernels are multi-head only (each head its own cache); "
                               "use --kv-heads = --heads (MoA converts GQA models with gqa_to_mha.py)")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern moa is for 1D sequences: use --seq, not --tokens")
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError(f"--phase {wl.phase}: MoA compresses a trained model, its kernels are "
                               "inference-only: use --phase fwd (prefill) or decode")
        if max(self.windows) > wl.kv_len:
            raise PatternError(f"--windows entry {max(self.windows)} exceeds the {wl.kv_len} keys "
                               "(MoA caps each head's cache at the sequence length)")
        if wl.phase == "fwd":
            if wl.q_len != wl.kv_len:
                raise PatternError("--pattern moa prefill is causal self-attention: use --seq without --kv-seq, "
                                   "or --phase decode")
            if self.sinks % BLOCK or any(w % BLOCK for w in self.windows):
                raise PatternError(f"--windows and --sinks must be multiples of {BLOCK} for prefill: MoA's "
                                   f"prefill kernel keeps whole {BLOCK}-token blocks (its caches are)")

    def layout(self, wl: Workload):
        raise PatternError("moa keeps a different window per head: no single per-dimension layout")

    def params(self) -> dict:
        return {"windows": ",".join(map(str, self.windows)), "sinks": self.sinks}

    def head_windows(self, wl: Workload) -> tuple[int, ...]:
        """Window of each query head: head h uses windows[h mod len(windows)]."""
        return tuple(self.windows[h % len(self.windows)] for h in range(wl.q_heads))

    def window_pairs(self, wl: Workload, window: int) -> int:
        """Pairs of one head with ``window``."""
        if wl.phase == "fwd":
            return prefill_pairs(wl.q_len, window, self.sinks)
        return Sinks(window, self.sinks).pairs_per_head(wl)

    def window_touched(self, wl: Workload, window: int) -> int:
        if wl.phase == "fwd":
            return wl.kv_len  # key j is query j's own
        return Sinks(window, self.sinks).touched_keys(wl)

    def _total(self, wl: Workload) -> int:
        return sum(self.window_pairs(wl, w) for w in self.head_windows(wl))

    def pairs_per_head(self, wl: Workload) -> int:
        return self._total(wl) // wl.q_heads

    def touched_keys(self, wl: Workload) -> int:
        return max(self.window_touched(wl, w) for w in self.windows)

    def assumptions(self, wl: Workload) -> list[str]:
        kernel = (f"prefill in {BLOCK}-token blocks (MoA's block-sparse prefill kernel)" if wl.phase == "fwd"
                  else "decode at token level over each head's sinks + window (MoA's circular cache)")
        notes = [f"MoA: head h keeps windows[h mod {len(self.windows)}] + {self.sinks} sink tokens; {kernel}; "
                 "one attention op per distinct window, all heads in one kernel; no tile-level model"]
        total = self._total(wl)
        if total % wl.q_heads:
            notes.append(f"MoA: pairs_per_head is the mean over heads rounded down: exactly {total} pairs over "
                         f"the {wl.q_heads} heads of one batch element (FLOPs and bytes use the exact sums)")
        return notes

    def op_graph(self, wl: Workload, pairs: int):
        e, eo, b, n, d, dv = wl.element_bytes, wl.output_bytes, wl.batch, wl.q_len, wl.qk_head_dim, wl.v_head_dim
        ops = []
        for window, heads in sorted(Counter(self.head_windows(wl)).items()):
            scores = b * heads * self.window_pairs(wl, window)
            keys = b * heads * self.window_touched(wl, window)
            tag = f"w{window}"
            ops += [
                Op(f"qk_{tag}", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores,
                   other_flops=4 * scores, per_pair=True,
                   reads={f"q_{tag}": b * heads * n * d * e, f"k_{tag}": keys * d * e}, writes={f"p_{tag}": 0}),
                Op(f"pv_{tag}", "attention", matmul_flops=2 * scores * dv, side="pv", per_pair=True,
                   other_flops=b * heads * n * dv, reads={f"p_{tag}": 0, f"v_{tag}": keys * dv * e},
                   writes={f"o_{tag}": b * heads * n * dv * eo}),
            ]
        return build_graph(ops)

    # -- closed forms ------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "MoA":
        if rank != 1:
            raise PatternError("--rank: --pattern moa is 1D (use --rank 1)")
        return cls(windows=(BLOCK, 2 * BLOCK))  # two heads per period: forms in w_0, w_1

    def closed_form(self, sp, s: dict, phase: str):
        if phase in ("bwd", "fwd+bwd"):
            raise PatternError(f"--phase {phase}: MoA's kernels are inference-only (fwd, decode)")
        b, h, n, m, d, dv, e, eo = (s[k] for k in ("B", "H", "N", "M", "D", "Dv", "e", "eo"))
        sinks = sp.Symbol("S", integer=True, nonnegative=True)
        ws = [sp.Symbol(f"w_{j}", integer=True, positive=True) for j in range(len(self.windows))]
        per_window = [_prefill_form(sp, n, w, sinks) if phase == "fwd" else _decode_form(sp, n, m, w, sinks)
                      for w in ws]
        touched = [m if phase == "fwd" else _decode_touched(sp, n, m, w, sinks) for w in ws]
        period = len(ws)
        mean_pairs = sp.Add(*per_window) / period
        mean_touched = sp.Add(*touched) / period
        exprs = {"pairs_per_head": mean_pairs,
                 "matmul_flops": 2 * b * h * (d + dv) * mean_pairs,
                 "exp": b * h * mean_pairs,
                 "compulsory_bytes": e * b * h * (n * d + mean_touched * (d + dv)) + eo * b * h * n * dv}
        exprs.update({f"pairs_per_head.w_{j}": p for j, p in enumerate(per_window)})
        meanings = {"S": "sink tokens per head",
                    **{f"w_{j}": f"window of heads h = {j} mod {period}" for j in range(period)}}
        assumes = (("N = M (causal prefill)", f"w_j and S multiples of {BLOCK}", f"H a multiple of {period}")
                   if phase == "fwd" else (f"H a multiple of {period}", "N <= M (new tokens at the end)"))
        return exprs, meanings, assumes

    def formula_values(self, wl: Workload) -> dict:
        return {"S": self.sinks, **{f"w_{j}": w for j, w in enumerate(self.windows)}}


def _prefill_form(sp, n, w, sinks):
    """N(N+1)/2 minus 64 x (whole 64-blocks skipped, summed over queries): F = floor(N/64) full
    query blocks, u = max(F + 1 - (w + S)/64, 0) of them past the window and sinks."""
    full = sp.floor(n / BLOCK)
    u = sp.Max(full + 1 - (w + sinks) / BLOCK, 0)
    return n * (n + 1) / 2 - BLOCK * (BLOCK * u * (u - 1) / 2 + (n - BLOCK * full) * u)


def _ramp(sp, x, hi):
    """sum_{t <= x} clamp(t, 0, hi) for integer x, hi >= 0."""
    top = sp.Min(sp.Max(x, 0), hi)
    return top * (top + 1) / 2 + hi * sp.Max(x - hi, 0)


def _decode_form(sp, n, m, w, sinks):
    """Query t-th token of the cache (t = M - N + 1 .. M) keeps min(t, w + S) keys."""
    return _ramp(sp, m, w + sinks) - _ramp(sp, m - n, w + sinks)


def _decode_touched(sp, n, m, w, sinks):
    first = sp.Max(m - n - w + 1, 0)  # the windows' union is [first, M); sinks add keys before it
    return m - first + sp.Min(sinks, first)
