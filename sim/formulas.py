"""Closed forms (sympy) of each pattern's counts, for ``attnsim formula`` and vectorised sweeps.

Each formula is derived independently of attnsim.counting and tests prove them equal on random
workloads (``tests/test_formulas.py``); ``lambdify`` turns them into numpy functions. Symbols:

    B batch, H query heads, Hkv KV heads, N queries, M keys, D QK head dim, Dv V head dim,
    e input bytes per element, eo output bytes per element, w window, k_i window of grid dim i,
    wl/wr keys before/after the query (symmetric sliding window), r latent KV rank (MLA),
    rho RoPE dim (MLA), C chunk (linear attention).

Backward phases follow each pattern's op graph: FlashAttention-2 (3 matmuls over D and 2 over Dv
per attended pair) plus MLA's up-projection dgrad/wgrad, or linear attention's chunked backward.
Patterns with a ``closed_form`` hook (MoBA, agent, HyperAttention, ...) bring their own forms and
symbols.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .errors import PatternError
from .patterns import MLA, Causal, Dense, Linear, Neighborhood, Pattern, Sliding
from .workload import Workload
from .patterns.opgraph import LSE_BYTES
from .counting import BWD_SOFTMAX_OPS_PER_PAIR, FWD_SOFTMAX_OPS_PER_PAIR

PHASES = ("fwd", "decode", "bwd", "fwd+bwd")


@dataclass(frozen=True)
class Formula:
    pattern: str
    phase: str
    exprs: dict          # quantity -> sympy expression
    symbols: dict        # symbol name -> meaning
    assumes: tuple[str, ...]


def _sym():
    import sympy as sp  # heavy: imported only by `attnsim formula` and sweeps

    names = "B H Hkv N M D Dv e eo w wl wr r rho C"
    return sp, dict(zip(names.split(), sp.symbols(names, positive=True, integer=True)))


MEANINGS = {"B": "batch", "H": "query heads", "Hkv": "KV heads", "N": "queries per head",
            "M": "keys per head", "D": "QK head dim", "Dv": "V head dim", "e": "bytes per input element",
            "eo": "bytes per output element", "w": "window",
            "wl": "keys before the query (window // 2)", "wr": "keys after the query", "r": "MLA kv_lora_rank", "rho": "MLA rope_dim", "C": "linear attention chunk"}


def _pairs(sp, s, pattern: Pattern, rank: int):
    """Pairs per head and the assumptions the closed form needs."""
    n, m, w = s["N"], s["M"], s["w"]
    if isinstance(pattern, (Dense,)):
        return n * m, ()
    if isinstance(pattern, Causal) or (isinstance(pattern, (MLA, Linear)) and pattern.causal):
        # bottom-right alignment: query i sees min(M, i + M - N + 1) keys (N <= M)
        return n * (m - n) + n * (n + 1) / 2, ("N <= M",)
    if isinstance(pattern, (MLA, Linear)):
        return n * m, ()
    if isinstance(pattern, Sliding) and pattern.causal:
        return w * (w + 1) / 2 + (n - w) * w, ("N = M", "w <= N")
    if isinstance(pattern, Sliding):
        # wl = w // 2 keys before, wr = w - 1 - wl after; windows shrink at both borders
        left, right = s["wl"], s["wr"]
        return n * (left + right + 1) - left * (left + 1) / 2 - right * (right + 1) / 2, ("N = M", "w <= N")
    if isinstance(pattern, Neighborhood) and not any(pattern._per_dim("causal", rank)):
        # windows shift inside the grid, never shrink: every query sees prod(k_i) keys
        ks = sp.symbols(" ".join(f"k_{i}" for i in range(rank)), positive=True, integer=True)
        return n * sp.Mul(*(ks if rank > 1 else (ks,))), ("N = M = prod(L_i)",)
    raise PatternError(f"no closed form for {pattern.describe()}: causal neighborhood windows are "
                       "clipped per dilation group, so attnsim counts them exactly but has no formula")


def _mla_ops(s, p: MLA, phase: str, pairs):
    """(matmul FLOPs by op, compulsory bytes) of MLA in ``phase``."""
    b, h, n, m, d, dv, r, rho, e, eo = (s[k] for k in ("B", "H", "N", "M", "D", "Dv", "r", "rho", "e", "eo"))
    nope = d - rho
    if p.mode == "absorbed" or (p.mode == "auto" and phase == "decode"):
        if phase in ("bwd", "fwd+bwd"):
            raise PatternError(f"--mla-mode absorbed is the inference formulation: --phase {phase} trains with "
                               "--mla-mode up-project (or auto)")
        ops = {"q_absorb": 2 * b * n * h * nope * r, "qk_latent": 2 * b * h * pairs * (r + rho),
               "pv_latent": 2 * b * h * pairs * r, "v_up": 2 * b * n * h * r * dv}
        inputs = e * (b * n * h * nope + r * h * nope + b * n * h * rho + b * m * r + b * m * rho + r * h * dv)
        return ops, inputs + eo * b * n * h * dv
    fwd = {"k_nope_up": 2 * b * m * r * h * nope, "v_up": 2 * b * m * r * h * dv,
           "qk": 2 * b * h * pairs * d, "pv": 2 * b * h * pairs * dv}
    weights = e * (r * h * nope + r * h * dv)
    fwd_bytes = e * (b * m * r + b * n * h * d + b * m * rho) + weights + eo * b * n * h * dv
    if phase in ("fwd", "decode"):
        return fwd, fwd_bytes
    # FlashAttention-2 on the saved K_nope and V (3 matmuls over D, 2 over Dv per pair), then the
    # up-projection's dgrad and wgrad (twice its forward)
    bwd = {"bwd_attention": 2 * b * h * pairs * (3 * d + 2 * dv),
           "bwd_decompress": 2 * (fwd["k_nope_up"] + fwd["v_up"])}
    kept = e * b * m * h * (nope + dv) + LSE_BYTES * b * h * n  # K_nope, V and LSE, fwd -> bwd
    # reads Q, K_rope, c_kv, W_UK, W_UV, O, dO, and writes dQ, dK_rope, dc_kv, dW_UK, dW_UV
    bwd_bytes = 2 * (e * (b * n * h * d + b * m * rho + b * m * r) + weights + eo * b * n * h * dv) + kept
    if phase == "bwd":
        return bwd, bwd_bytes
    return {**fwd, **bwd}, fwd_bytes + kept + bwd_bytes


def _mla_other(s, p: MLA, phase: str, pairs) -> dict:
    """Non-matmul, non-exp FLOPs and kernel launches of MLA's op graph (attnsim.patterns.mla):
    scale, max, subtract and sum per score and the output rescale (Dv, or r when absorbed) per
    row forward; FlashAttention-2's delta pre-pass, recompute and dS per score backward."""
    import sympy as sp

    b, h, n, dv, r = (s[k] for k in ("B", "H", "N", "Dv", "r"))
    scores, rows = b * h * pairs, b * h * n
    if p.mode == "absorbed" or (p.mode == "auto" and phase == "decode"):
        return {"softmax_other": sp.factor(FWD_SOFTMAX_OPS_PER_PAIR * scores + rows * r), "kernels": sp.Integer(2)}
    fwd = FWD_SOFTMAX_OPS_PER_PAIR * scores + rows * dv  # kernels: decompress, attention
    bwd = BWD_SOFTMAX_OPS_PER_PAIR * scores + 2 * rows * dv  # delta, attention, dq convert, dgrad, wgrad
    other, kernels = {"fwd": (fwd, 2), "decode": (fwd, 2), "bwd": (bwd, 5), "fwd+bwd": (fwd + bwd, 7)}[phase]
    return {"softmax_other": sp.factor(other), "kernels": sp.Integer(kernels)}


def formula(pattern: Pattern, phase: str = "fwd", rank: int = 1) -> Formula:
    """Closed forms of pairs per head, matmul FLOPs, exponentials and compulsory bytes."""
    if phase not in PHASES:
        raise PatternError(f"--phase {phase!r}: use one of {', '.join(PHASES)}")
    sp, s = _sym()
    if has_closed_form_hook(type(pattern)):
        exprs, meanings, assumes = pattern.closed_form(sp, s, phase)
        return Formula(pattern.name, phase, exprs, _used(exprs, meanings), tuple(assumes))
    pairs, assumes = _pairs(sp, s, pattern, rank)
    b, h, hkv, n, m, d, dv, e, eo = (s[k] for k in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo"))
    heads = b * h
    exprs = {"pairs_per_head": sp.factor(pairs)}
    if isinstance(pattern, Linear):
        return _linear_formula(sp, s, pattern, phase, pairs, assumes)
    if isinstance(pattern, MLA):
        ops, compulsory = _mla_ops(s, pattern, phase, pairs)
        exprs.update({f"matmul_flops.{k}": sp.factor(v) for k, v in ops.items()})
        exprs["matmul_flops"] = sp.factor(sum(ops.values()))
        exprs["exp"] = sp.factor((2 if phase == "fwd+bwd" else 1) * heads * pairs)
        exprs["compulsory_bytes"] = sp.factor(compulsory)
        exprs.update(_mla_other(s, pattern, phase, pairs))
        return Formula(pattern.name, phase, exprs, _used(exprs), assumes)
    qk, pv = 2 * heads * pairs * d, 2 * heads * pairs * dv
    q, kv, o = e * b * h * n * d, e * b * hkv * m * (d + dv), eo * b * h * n * dv
    lse = LSE_BYTES * b * h * n
    matmul, exp, compulsory = {
        "fwd": (qk + pv, heads * pairs, q + kv + o),
        "decode": (qk + pv, heads * pairs, q + kv + o),
        # FlashAttention-2 backward: S and dQ, dK contract over D (3x), dV and dP over Dv (2x);
        # reads Q, K, V, O, dO, LSE, writes dQ, dK, dV.
        "bwd": (3 * qk + 2 * pv, heads * pairs, 2 * (q + kv) + 2 * o + lse),
        "fwd+bwd": (4 * qk + 3 * pv, 2 * heads * pairs, 3 * (q + kv) + 3 * o + 2 * lse),
    }[phase]
    exprs.update({"matmul_flops": sp.factor(matmul), "exp": sp.factor(exp),
                  "compulsory_bytes": sp.factor(compulsory)})
    assumes += ("every key is attended by some query (touched keys = M)",)
    return Formula(pattern.name, phase, exprs, _used(exprs), assumes)


def _linear_formula(sp, s, p: Linear, phase: str, pairs, assumes) -> Formula:
    b, h, hkv, n, m, d, dv, e, eo, c = (s[k] for k in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo", "C"))
    state = 2 * b * h * n * d * dv  # one D x Dv product per query (read-out) and per key (update)
    # chunks of C, the last one N mod C: full C x C intra-chunk products
    squares = sp.floor(n / c) * c**2 + (n - sp.floor(n / c) * c) ** 2 if p.causal else 0
    fwd = 2 * state + 2 * b * h * squares * (d + dv) if phase != "decode" else 2 * state
    # flash-linear-attention's chunked backward: dS, dQ, dK, A, dV intra-chunk (3 over D, 2 over
    # Dv), states recomputed, state gradients, and the inter-chunk dQ, dK, dV: 5 state products
    bwd = 5 * state + 2 * b * h * squares * (3 * d + 2 * dv)
    keys = n if phase == "decode" else m
    inputs = e * b * (h * n * d + hkv * keys * (d + dv))  # Q, K, V
    out = eo * b * h * n * dv  # O, and dO of the backward
    matmul, compulsory = {
        "fwd": (fwd, inputs + out),
        "decode": (fwd, inputs + out + 2 * b * h * d * dv * 4),  # fp32 state in and out
        "bwd": (bwd, 2 * inputs + out),  # reads Q, K, V, dO (no O: no softmax), writes dQ, dK, dV
        "fwd+bwd": (fwd + bwd, 3 * inputs + 2 * out),
    }[phase]
    # non-matmul FLOPs (attnsim.patterns.linear): the feature map on Q and K, the causal mask of
    # each C x C block and the inter-chunk add; backward: feature map and its gradient, and
    # causal: two masks per block and the inter-chunk adds of dQ, dK, dV
    bh = b * h
    fwd_other = bh * (n + keys) * d + (bh * squares + bh * n * dv if p.causal and phase != "decode" else 0)
    bwd_other = 4 * bh * n * d + (2 * bh * squares + 2 * bh * n * d + bh * n * dv if p.causal else 0)
    other, kernels = {"fwd": (fwd_other, 1), "decode": (fwd_other, 1), "bwd": (bwd_other, 1),
                      "fwd+bwd": (fwd_other + bwd_other, 2)}[phase]
    exprs = {"pairs_per_head": sp.factor(pairs), "matmul_flops": matmul, "exp": sp.Integer(0),
             "compulsory_bytes": sp.factor(compulsory), "softmax_other": other, "kernels": sp.Integer(kernels)}
    return Formula(p.name, phase, exprs, _used(exprs), assumes)


def has_closed_form_hook(cls: type) -> bool:
    return cls.closed_form is not Pattern.closed_form


def _used(exprs: dict, extra: dict | None = None) -> dict:
    names = sorted({str(x) for v in exprs.values() for x in sp_free(v)})
    meanings = {**MEANINGS, **(extra or {})}
    return {n: meanings.get(n, f"window of grid dim {n[2:]}" if n.startswith("k_") else n) for n in names}


def sp_free(expr) -> set:
    return getattr(expr, "free_symbols", set())


def values(wl: Workload, pattern: Pattern) -> dict:
    """The symbol values of ``wl`` and ``pattern`` (to evaluate a formula)."""
    out = {"B": wl.batch, "H": wl.q_heads, "Hkv": wl.kv_heads, "N": wl.q_len, "M": wl.kv_len,
           "D": wl.qk_head_dim, "Dv": wl.v_head_dim, "e": wl.element_bytes, "eo": wl.output_bytes}
    if isinstance(pattern, Sliding):
        out.update(w=pattern.window, wl=pattern.window // 2, wr=pattern.window - 1 - pattern.window // 2)
    if isinstance(pattern, MLA):
        out.update(r=pattern.kv_lora_rank, rho=pattern.rope_dim)
    if isinstance(pattern, Linear):
        out["C"] = pattern.chunk
    if isinstance(pattern, Neighborhood):
        rank = len(wl.q_grid)
        out.update({f"k_{i}": k for i, k in enumerate(pattern._per_dim("window", rank))})
    out.update(pattern.formula_values(wl))
    return out


def evaluate(f: Formula, wl: Workload, pattern: Pattern) -> dict:
    """Each quantity's numeric value (via lambdify, as a sweep would use it)."""
    vals = values(wl, pattern)
    out = {}
    for name, expr in f.exprs.items():
        syms, fn = _lambdified(expr)
        out[name] = fn(*(vals[x] for x in syms)) if syms else float(expr)
    return out


@lru_cache(maxsize=256)
def _lambdified(expr) -> tuple[tuple[str, ...], object]:
    """(symbol names, numpy function) of ``expr``: lambdify once per distinct form (slow: ~50 ms)."""
    import sympy as sp

    syms = sorted(sp_free(expr), key=str)
    return tuple(map(str, syms)), sp.lambdify(syms, expr, "numpy")
