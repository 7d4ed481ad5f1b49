"""Data-dependent token selection: HiP, Sparsifiner, DMA and TCA-Attention, on the shared
:class:`attnsim.patterns.selection.Selection` base (exact counts from the parameters, including
what choosing the keys costs)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PatternError
from ..workload import Workload
from .base import Flag
from .flagvals import causal_switch, int_flag, one_block, positive_flags
from .opgraph import ID_BYTES, Op
from .selection import Dims, Selection, cached_sums, causal_capped_sum, causal_capped_sum_sym, div

def _doublings(prefix: np.ndarray, m: int) -> np.ndarray:
    """Tree-search iterations: the least i with m * 2**i >= prefix blocks (0 when prefix <= m)."""
    n, reach = np.zeros_like(prefix), np.full_like(prefix, m)
    while (more := reach < prefix).any():
        n += more
        reach = reach * 2
    return n


@dataclass(frozen=True)
class HiP(Selection):
    """HiP attention (Lee et al., arXiv 2406.09827; code github DeepAuto-AI/hip-attention).

    Queries come in blocks of ``query_block`` (b_q), keys in blocks of ``block_size`` (b_k).
    Per query block, a tree search picks ``top_k`` keys (k/b_k key blocks) among the whole key
    blocks before the block: start from k/b_k equal groups; each iteration splits every group in
    two, scores each half by its first key block (max of the dot products with every
    ``query_stride``-th query of the block) and keeps the best k/b_k halves, until groups are one
    block (the v1.1 draft kernel ``masking_iteration_draft_numba_kernel``; paper Alg. 1). With at
    most k/b_k prefix blocks the block attends them all. Inferred: each query also attends, causally,
    the keys from its block's first query (rounded down to a key block) to itself, which the
    search never covers (the code covers recent keys with a sliding window); the code-level
    extras (that 128-key window, sink tokens, the first dense queries) are left out.
    """

    top_k: int = 512         # mask_k (paper k): hip_attention() default
    block_size: int = 2      # block_size_k (paper b_k), same default
    query_block: int = 32    # block_size_q (paper b_q), same default
    query_stride: int = 2    # block_stride_q (paper b_sq): the scorer reads q[1::2]
    causal: bool = True

    name = "hip"
    flags = frozenset({"top_k", "block_size", "query_block", "causal"})
    cli_flags = (Flag("query_block", "int", "queries per block sharing one key selection (HiP b_q) [default: 32]."),)

    @classmethod
    def from_flags(cls, f: dict) -> "HiP":
        block = one_block(f, "hip")
        return cls(top_k=int_flag(f, "top_k", 512), block_size=2 if block is None else block,
                   query_block=int_flag(f, "query_block", 32), causal=causal_switch(f, "hip", True))

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "HiP":
        return cls(causal=causal)

    def check(self, wl: Workload) -> None:
        self.check_common(wl)
        positive_flags(top_k=self.top_k, block_size=self.block_size, query_block=self.query_block)
        if self.top_k % self.block_size:
            raise PatternError(f"--top-k {self.top_k} must be a multiple of --block-size {self.block_size}: "
                               "HiP selects whole key blocks")
        if self.top_k > wl.kv_len:
            raise PatternError(f"--top-k {self.top_k} exceeds the {wl.kv_len} keys: use --top-k <= {wl.kv_len}")
        if self.causal and wl.q_len > wl.kv_len:
            raise PatternError("causal --pattern hip needs at most as many queries as keys (--kv-seq >= --seq)")
        if not self.causal and wl.kv_len % self.block_size:
            raise PatternError(f"--block-size {self.block_size} must divide the {wl.kv_len} keys for non-causal "
                               "hip (a short last block would make the count depend on the data)")

    def params(self) -> dict:
        return {"top_k": self.top_k, "block_size": self.block_size, "query_block": self.query_block,
                "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"HiP: per block of {self.query_block} queries, a tree search over whole {self.block_size}-key "
                f"blocks keeps {self.top_k} keys; every iteration scores all {2 * self.top_k // self.block_size} "
                f"halves (empty ones too, as a fixed-size GPU tile) with every {self.query_stride}th query",
                "HiP: the block's own recent keys are attended causally (inferred); the code's 128-key sliding "
                "window, sinks and dense first queries are not modelled",
                "HiP: keys read = recent keys + the m(n+1) representative blocks n iterations visit, per query "
                "block and query head, capped at the cache (exact when every split halves a group)"]

    def exact_sums(self, wl: Workload) -> dict:
        bq, bk, m, nq, nkv = self.query_block, self.block_size, self.top_k // self.block_size, wl.q_len, wl.kv_len
        starts = np.arange(0, nq, bq, dtype=np.int64)
        rows = np.minimum(bq, nq - starts)
        if self.causal:
            first = starts + nkv - nq
            prefix = first // bk                      # whole key blocks before the query block
            recent = first + rows - prefix * bk       # keys from the last whole block to the last query
            pos, block = np.arange(nq, dtype=np.int64) + nkv - nq, np.arange(nq) // bq
            own = int((pos - prefix[block] * bk + 1).sum())
        else:
            prefix, recent, own = np.full(len(starts), nkv // bk), np.zeros(len(starts), dtype=np.int64), 0
        iters, chosen = _doublings(prefix, m), np.minimum(prefix, m)
        scorers = -(-rows // self.query_stride)
        group = wl.q_heads // wl.kv_heads
        reps = np.where(prefix <= m, prefix, m * (iters + 1))
        return {"pairs": own + bk * int((rows * chosen).sum()),
                "k_keys": min(nkv, group * int((recent + bk * reps).sum())),
                "v_keys": min(nkv, group * int((recent + bk * chosen).sum())),
                "dots": int((2 * m * iters * scorers).sum()) * bk, "candidates": 2 * m * int(iters.sum()),
                "ids": len(starts) * m, "iterations": int(iters.sum())}

    def symbolic_sums(self, sp, s: dict, phase: str):
        k, bk, bq, sq, it = sp.symbols("k b_k b_q s_q I", positive=True, integer=True)
        n, m_keys, group = s["N"], s["M"], s["H"] / s["Hkv"]
        meanings = {"k": "keys per query (HiP top_k)", "b_k": "key block", "b_q": "query block",
                    "s_q": "query stride of the scorer", "I": "tree-search iterations summed over query blocks, "
                    "each ceil(log2(whole key blocks before the block / (k/b_k)))"}
        if phase == "decode":
            recent = m_keys - bk * sp.floor((m_keys - 1) / bk)
            sums = {"pairs": recent + k, "k_keys": sp.Min(m_keys, group * (recent + k * (it + 1))),
                    "v_keys": sp.Min(m_keys, group * (recent + k)), "dots": 2 * k * it,
                    "candidates": 2 * k / bk * it, "ids": k / bk}
            return sums, meanings, ("one decode query (N = 1)", "more than k/b_k whole key blocks before it")
        if not self.causal:
            blocks = n / bq
            sums = {"pairs": n * k, "k_keys": sp.Min(m_keys, group * blocks * k * (it / blocks + 1)),
                    "v_keys": sp.Min(m_keys, group * blocks * k), "dots": 2 * k * bq / sq * it,
                    "candidates": 2 * k / bk * it, "ids": blocks * k / bk}
            return sums, meanings, ("b_q | N", "b_k | M", "b_k | k", "s_q | b_q", "k <= M")
        sums = {"pairs": n * (bq + 1) / 2 + k * (n - k) + k * (k - bq) / 2, "k_keys": m_keys, "v_keys": m_keys,
                "dots": 2 * k * bq / sq * it, "candidates": 2 * k / bk * it, "ids": n / bq * k / bk}
        return sums, meanings, ("N = M", "b_k | b_q", "b_q | N", "b_q | k", "k <= N - b_q", "s_q | b_q")

    def formula_values(self, wl: Workload) -> dict:
        return {"k": self.top_k, "b_k": self.block_size, "b_q": self.query_block, "s_q": self.query_stride,
                "I": cached_sums(self, wl)["iterations"]}

    def selection_ops(self, x: Dims, s: dict) -> list[Op]:
        q, k = x.b * x.h * x.nq * x.d * x.e, x.b * x.hkv * s["k_keys"] * x.d * x.e
        return [Op("tree_score", "mask", matmul_flops=2 * x.b * x.h * s["dots"] * x.d,
                   other_flops=x.b * x.h * s["dots"], reads={"q": q, "k": k}, writes={"tree_scores": 0}),
                Op("tree_top_k", "mask", other_flops=x.b * x.h * s["candidates"], reads={"tree_scores": 0},
                   writes=self.attention_ids(x, s))]

    def attention_ids(self, x: Dims, s: dict) -> dict:
        return {"block_ids": ID_BYTES * x.b * x.h * s["ids"]}


@dataclass(frozen=True)
class Sparsifiner(Selection):
    """Sparsifiner (Wei et al., CVPR 2023, arXiv 2303.13755; code github lim142857/Sparsifiner).

    A low-rank connectivity predictor (``MaskPredictor``): q and k are projected to d/2 channels,
    keys to ``rank`` tokens (Linformer-style, proj_n), the cheap scores q_c k_down^T are
    softmaxed, each row keeps its top 8 coefficients (BASIS_COEF.TOPK) and is up-projected by the
    basis to N connectivity scores; every query but the class token keeps its ``top_k`` best keys
    and the class token attends all. Non-causal (ViT self-attention). The attention is counted
    sparse, as the paper counts MHSA FLOPs (its reference code masks a dense score matrix). The
    mask is detached, so the backward is the sparse attention's only.
    """

    rank: int | None = None       # reduced tokens; default N // 6 (sparsifiner_default_config REDUCE_N_FACTOR 6)
    top_k: int | None = None      # keys per query; default ceil(0.25 N) (ATTN_KEEP_RATE 0.25)
    channel_factor: int = 2       # REDUCE_C_FACTOR: the predictor works on d / 2 channels
    basis_top_k: int = 8          # BASIS_COEF.TOPK: coefficients kept per row before up-projection

    name = "sparsifiner"
    trains = True
    flags = frozenset({"rank", "top_k"})
    cli_flags = (Flag("rank", "int", "reduced tokens of the low-rank connectivity predictor [default: N // 6]."),)

    @classmethod
    def from_flags(cls, f: dict) -> "Sparsifiner":
        return cls(rank=int_flag(f, "rank"), top_k=int_flag(f, "top_k"))

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Sparsifiner":
        return cls()

    def resolved(self, wl: Workload) -> tuple[int, int]:
        n = wl.kv_len
        return (self.rank if self.rank is not None else n // 6,
                self.top_k if self.top_k is not None else -(-n // 4))

    def check(self, wl: Workload) -> None:
        self.check_common(wl)
        if wl.q_len != wl.kv_len:
            raise PatternError("--pattern sparsifiner is ViT self-attention: queries and keys are the same tokens")
        rank, k = self.resolved(wl)
        if rank < self.basis_top_k or rank > wl.kv_len:
            raise PatternError(f"--rank {rank} must be between {self.basis_top_k} (the predictor keeps the top "
                               f"{self.basis_top_k} of its --rank coefficients) and the {wl.kv_len} tokens")
        if not 0 < k <= wl.kv_len:
            raise PatternError(f"--top-k {k} must be between 1 and the {wl.kv_len} tokens")
        if wl.qk_head_dim % self.channel_factor:
            raise PatternError(f"--head-dim {wl.qk_head_dim} must be even: the predictor halves the channels")

    def params(self) -> dict:
        return {"rank": self.rank if self.rank is not None else "N//6",
                "top_k": self.top_k if self.top_k is not None else "ceil(N/4)"}

    def assumptions(self, wl: Workload) -> list[str]:
        rank, k = self.resolved(wl)
        return [f"Sparsifiner: predictor on d/{self.channel_factor} channels and {rank} reduced tokens, top "
                f"{self.basis_top_k} basis coefficients per row (basis rows dense: its weight threshold is not "
                f"modelled), top {k} keys per query; the class token (first) attends all keys",
                "Sparsifiner: attention counted sparse as in the paper's FLOPs; backward = sparse attention only "
                "(the mask is detached)"]

    def exact_sums(self, wl: Workload) -> dict:
        n, (rank, k) = wl.kv_len, self.resolved(wl)
        return {"pairs": n + (n - 1) * k, "k_keys": n, "v_keys": n, "r": rank, "k": k, "t": self.basis_top_k}

    def symbolic_sums(self, sp, s: dict, phase: str):
        k, r, t = sp.symbols("k r t", positive=True, integer=True)
        n = s["N"]
        meanings = {"k": "keys per query (Sparsifiner top_k)", "r": "reduced tokens of the predictor (rank)",
                    "t": "basis coefficients kept per row (8)"}
        return ({"pairs": n + (n - 1) * k, "k_keys": s["M"], "v_keys": s["M"], "r": r, "k": k, "t": t},
                meanings, ("N = M", "D even"))

    def formula_values(self, wl: Workload) -> dict:
        rank, k = self.resolved(wl)
        return {"k": k, "r": rank, "t": self.basis_top_k}

    def selection_ops(self, x: Dims, s: dict) -> list[Op]:
        c, r, rows = div(x.d, self.channel_factor), s["r"], x.nq - 1   # rows: all but the class token
        weights = (2 * x.d * c + 2 * x.nkv * r) * x.e
        q, k = x.b * x.h * x.nq * x.d * x.e, x.b * x.hkv * x.nkv * x.d * x.e
        return [
            Op("predictor_proj", "predictor", matmul_flops=2 * x.b * (x.h * x.nq + x.hkv * x.nkv) * x.d * c,
               reads={"q": q, "k": k, "predictor_weights": weights}, writes={"qk_low": 0}),
            Op("predictor_keys", "predictor", matmul_flops=2 * x.b * x.hkv * c * x.nkv * r, reads={"qk_low": 0},
               writes={"k_down": 0}),
            Op("predictor_scores", "predictor", matmul_flops=2 * x.b * x.h * x.nq * c * r, exp=x.b * x.h * rows * r,
               other_flops=4 * x.b * x.h * rows * r, reads={"k_down": 0}, writes={"coef": 0}),
            Op("basis_top_k", "predictor", other_flops=x.b * x.h * rows * r, reads={"coef": 0},
               writes={"coef_sparse": 0}),
            Op("up_project", "predictor", matmul_flops=2 * x.b * x.h * rows * s["t"] * x.nkv,
               reads={"coef_sparse": 0}, writes={"connectivity": 0}),
            Op("mask_top_k", "predictor", other_flops=x.b * x.h * rows * x.nkv, reads={"connectivity": 0},
               writes=self.attention_ids(x, s))]

    def attention_ids(self, x: Dims, s: dict) -> dict:
        return {"key_ids": ID_BYTES * x.b * x.h * s["pairs"]}


@dataclass(frozen=True)
class DMA(Selection):
    """Trainable Dynamic Mask Attention (Shi et al., arXiv 2508.02124; code github
    SmallDoges/flash-dmattn, its Doge model and benchmarks).

    Per KV head, a value-derived bias zoh = exp(A * softplus(V dt_proj^T)) (dt_proj: all KV heads'
    values -> one scalar per head and key) is added to the scores; each query keeps the ``top_k``
    keys (keep_window_size) of largest bias among those the causal mask leaves, shared by the KV
    head's query heads. Trainable: the backward adds dbias and the dt_proj gradient.
    """

    top_k: int = 2048        # keep_window_size: flash-dmattn benchmark/default
    causal: bool = True

    name = "dma"
    trains = True
    bias_per_pair = 1
    flags = frozenset({"top_k", "causal"})

    @classmethod
    def from_flags(cls, f: dict) -> "DMA":
        return cls(top_k=int_flag(f, "top_k", 2048), causal=causal_switch(f, "dma", True))

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "DMA":
        return cls(causal=causal)

    def check(self, wl: Workload) -> None:
        self.check_common(wl)
        positive_flags(top_k=self.top_k)
        if self.causal and wl.q_len > wl.kv_len:
            raise PatternError("causal --pattern dma needs at most as many queries as keys (--kv-seq >= --seq)")

    def params(self) -> dict:
        return {"top_k": self.top_k, "causal": int(self.causal)}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"DMA: each query keeps min({self.top_k}, visible) keys by a per-KV-head value bias; the bias is "
                "recomputed over the whole cache each call (reads all of V), top-k compares every key per row",
                "DMA: selection written as key indices (flash-dmattn materialises dense N x M mask and bias "
                "tensors: not counted); keys read per KV head = min(M, N * top_k)"]

    def exact_sums(self, wl: Workload) -> dict:
        w, nq, nkv = self.top_k, wl.q_len, wl.kv_len
        pairs = causal_capped_sum(nq, nkv, w) if self.causal else nq * min(w, nkv)
        return {"pairs": pairs, "k_keys": min(nkv, nq * w), "v_keys": nkv}

    def symbolic_sums(self, sp, s: dict, phase: str):
        w, n, m = s["w"], s["N"], s["M"]
        pairs = causal_capped_sum_sym(sp, n, m, w) if self.causal else n * sp.Min(w, m)
        return ({"pairs": pairs, "k_keys": sp.Min(m, n * w), "v_keys": m},
                {"w": "keys kept per query (DMA keep_window_size, --top-k)"}, ("N <= M",) if self.causal else ())

    def formula_values(self, wl: Workload) -> dict:
        return {"w": self.top_k}

    def selection_ops(self, x: Dims, s: dict) -> list[Op]:
        v, zoh = x.b * x.hkv * x.nkv * x.dv * x.e, x.b * x.hkv * x.nkv
        return [Op("zoh", "mask", matmul_flops=2 * zoh * x.hkv * x.dv, side="pv", exp=2 * zoh, other_flops=2 * zoh,
                   reads={"v": v, "dt_proj": x.hkv * x.hkv * x.dv * x.e}, writes={"zoh": zoh * x.e}),
                Op("mask_top_k", "mask", other_flops=x.b * x.hkv * x.nq * x.nkv, reads={"zoh": zoh * x.e},
                   writes=self.attention_ids(x, s))]

    def attention_ids(self, x: Dims, s: dict) -> dict:
        return {"key_ids": ID_BYTES * x.b * x.hkv * s["pairs"], "zoh": x.b * x.hkv * x.nkv * x.e}

    def backward_selection_ops(self, x: Dims, s: dict) -> list[Op]:
        """dbias (the bias re-added in the recompute, dS summed per key) fused in the backward
        kernel, then dt_proj's backward: dgrad into V and wgrad (twice its forward matmul)."""
        zoh, dt = x.b * x.hkv * x.nkv, x.hkv * x.hkv * x.dv * x.e
        return [Op("dbias", "bwd_attention", other_flops=2 * x.b * x.h * s["pairs"], reads={"ds": 0},
                   writes={"dzoh": zoh * x.e}),
                Op("zoh_bwd", "mask_bwd", matmul_flops=4 * zoh * x.hkv * x.dv, side="pv", exp=zoh, other_flops=3 * zoh,
                   reads={"dzoh": zoh * x.e, "v": x.b * x.hkv * x.nkv * x.dv * x.e, "dt_proj": dt},
                   writes={"d_dt_proj": dt})]


@dataclass(frozen=True)
class TCA(Selection):
    """TCA-Attention: training-free context-adaptive attention (You et al., arXiv 2512.09238).

    Keys older than a local ``window`` are cut into blocks of ``block_size`` (b); once a block is
    complete, each head keeps ``keep_fraction`` of its tokens (k_b = keep_fraction * b, the head
    budget the paper calibrates offline; here one budget for all heads), chosen online by a
    redundancy score; every query attends the kept tokens of the complete blocks before it plus
    all later keys exactly (prefill and decode alike). The paper's text was not reachable: the
    block/window layout and scoring are inferred from its predecessor CCA-Attention (same group,
    github chenyaofo/CCA-Attention: groups of 16, window 1024, each group scored by its last
    query, ``fast_calculate_fusion_weights``); here a block is scored by q_last . k over its b
    tokens and its top k_b are kept. A block is selected once, in the call that completes it.
    """

    keep_fraction: float
    block_size: int = 16     # CCA-Attention pooling_size default (inferred for TCA)
    window: int = 1024       # CCA-Attention window_size default (inferred for TCA)

    name = "tca"
    causal = True            # causal LLM attention: priced against causal full attention
    flags = frozenset({"keep_fraction", "block_size", "window"})
    cli_flags = (Flag("keep_fraction", "float", "fraction of each older block's tokens a head keeps (TCA budget)."),)

    @classmethod
    def from_flags(cls, f: dict) -> "TCA":
        from ..spec import parse_dims

        fraction = f.get("keep_fraction")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise PatternError("--pattern tca needs --keep-fraction as a number (tokens kept per older block, "
                               f"e.g. 0.25), got {fraction!r}")
        window = parse_dims("--window", None if f.get("window") is None else str(f["window"]), minimum=0)
        if window is not None and len(window) != 1:
            raise PatternError("--window for tca is one number of recent keys kept exactly, e.g. 1024")
        block = one_block(f, "tca")
        return cls(float(fraction), 16 if block is None else block, 1024 if window is None else window[0])

    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "TCA":
        return cls(keep_fraction=0.25)

    @property
    def kept_per_block(self) -> int:
        return round(self.keep_fraction * self.block_size)

    def check(self, wl: Workload) -> None:
        self.check_common(wl)
        positive_flags(block_size=self.block_size)
        if self.window < 0:
            raise PatternError(f"--window must be >= 0, got {self.window}")
        if not 0 < self.keep_fraction <= 1:
            raise PatternError(f"--keep-fraction must be in (0, 1], got {self.keep_fraction}")
        if abs(self.keep_fraction * self.block_size - self.kept_per_block) > 1e-9 or not self.kept_per_block:
            raise PatternError(f"--keep-fraction {self.keep_fraction} x --block-size {self.block_size} must be a "
                               "whole number >= 1 of tokens kept per block, e.g. 0.25 with 16")
        if wl.q_len > wl.kv_len:
            raise PatternError("--pattern tca is causal: it needs at most as many queries as keys")

    def params(self) -> dict:
        return {"keep_fraction": self.keep_fraction, "block_size": self.block_size, "window": self.window}

    def assumptions(self, wl: Workload) -> list[str]:
        return [f"TCA (inferred from CCA-Attention): blocks of {self.block_size} older than the last {self.window} "
                f"keys keep {self.kept_per_block} tokens each, one budget for all heads; a block is scored once "
                "(q_last . k over its tokens, top-k_b compares) in the call that completes it",
                "TCA: keys read per KV head = recent keys + kept tokens, a block's union over the KV head's query "
                "heads taken as min(block, heads x kept) (exact for one query head per KV head)"]

    def _compressed(self, visible):
        """Complete blocks before the window, for ``visible`` keys (int or array)."""
        return np.maximum(np.asarray(visible) - self.window, 0) // self.block_size

    def exact_sums(self, wl: Workload) -> dict:
        b, kb, nq, nkv = self.block_size, self.kept_per_block, wl.q_len, wl.kv_len
        blocks = self._compressed(np.arange(nkv - nq, nkv, dtype=np.int64) + 1)
        full, new = int(self._compressed(nkv)), int(self._compressed(nkv) - self._compressed(nkv - nq))
        union = min(b, wl.q_heads // wl.kv_heads * kb)
        keys = nkv - b * full + (full - new) * union + new * b
        pairs = int((np.arange(nkv - nq, nkv, dtype=np.int64) + 1 - (b - kb) * blocks).sum())
        return {"pairs": pairs, "k_keys": keys, "v_keys": keys, "blocks": new, "b": b, "kb": kb}

    def symbolic_sums(self, sp, s: dict, phase: str):
        b, kb, w = sp.symbols("b k_b w", positive=True, integer=True)
        n, m = s["N"], s["M"]

        def compressed(visible):
            return sp.floor(sp.Max(visible - w, 0) / b)

        def floor_sum(x):  # sum_{y=1..x} floor(y / b), x >= 0
            q = sp.floor(x / b)
            return b * q * (q - 1) / 2 + q * (x - q * b + 1)

        full, new = compressed(m), compressed(m) - compressed(m - n)
        pairs = n * (2 * m - n + 1) / 2 - (b - kb) * (floor_sum(sp.Max(m - w, 0)) - floor_sum(sp.Max(m - n - w, 0)))
        keys = m - b * full + (full - new) * sp.Min(b, s["H"] / s["Hkv"] * kb) + new * b
        meanings = {"b": "TCA block", "k_b": "tokens kept per block (keep_fraction * b)",
                    "w": "recent keys attended exactly (window)"}
        return {"pairs": pairs, "k_keys": keys, "v_keys": keys, "blocks": new, "b": b, "kb": kb}, meanings, ("N <= M",)

    def formula_values(self, wl: Workload) -> dict:
        return {"b": self.block_size, "k_b": self.kept_per_block, "w": self.window}

    def selection_ops(self, x: Dims, s: dict) -> list[Op]:
        if isinstance(s["blocks"], int) and not s["blocks"]:
            return []  # no block completes in this call: nothing to select
        scored = x.b * x.h * s["blocks"] * s["b"]
        return [Op("block_score", "select", matmul_flops=2 * scored * x.d,
                   reads={"q": x.b * x.h * x.nq * x.d * x.e, "k": x.b * x.hkv * s["k_keys"] * x.d * x.e},
                   writes={"block_scores": 0}),
                Op("block_top_k", "select", other_flops=scored, reads={"block_scores": 0},
                   writes={"kept_ids": ID_BYTES * x.b * x.h * s["blocks"] * s["kb"]})]
