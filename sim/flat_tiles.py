"""Exact FlexAttention block counts for a grid pattern flattened row-major, without the N×N mask.

FlexAttention's ``create_block_mask`` cuts the *flattened* query and key sequences into 1D blocks
of ``TQ`` and ``TK`` tokens. On a 2D/3D grid such a block is not a box, so the box-tile products
of attnsim.tiles do not apply. This module counts them exactly anyway:

1. A flat interval of a mixed-radix grid is a disjoint union of at most ``2r - 1`` row-major
   *boxes* (products of per-dimension intervals): a ragged head, a run of whole slabs, a ragged
   tail, recursively.
2. A pattern is a product of per-dimension rules, so for a query box ``∏ I_d`` the keys kept by
   *some* query are ``∏ U_d`` (``U_d`` = union of the dim-``d`` windows over ``I_d``) and the keys
   kept by *every* query are ``∏ C_d`` (intersections). Both identities hold for products indexed
   by a product set; an empty ``U_d`` empties the whole product, as it should.
3. ``|∏ S_d ∩ [0, m)|`` has a digit-DP closed form over the mixed-radix digits ``m_d`` of ``m``:
   ``Σ_d [m_e ∈ S_e for all e < d] · |S_d ∩ [0, m_d)| · ∏_{e>d} |S_e|``. So each dimension only
   needs ``F_d(v) = |S_d ∩ [0, v)|`` at the digits ``v`` of block boundaries (and membership,
   which is ``F_d(v + 1) - F_d(v)``); differences of consecutive boundaries give per-KV-block counts.
4. ``F_d`` is exact per dilation group even if windows leave gaps: with ``start``/``stop``
   non-decreasing (attnsim.patterns.axes), the queries covering key ``j`` are an interval
   ``[qa(j), qb(j))`` with ``qa``, ``qb`` non-decreasing in ``j``, so the keys reached from a query
   interval ``[il, ih)`` are the covered keys of one key interval, found by binary search; the keys
   reached by every query of ``[il, ih)`` form one interval too.

A Q block meets a KV block iff one of its boxes does, and is full iff every box covers the whole
block and the Q block holds ``TQ`` real queries. Cost: O(#boxes · #KV blocks · r) numpy work plus
O(dilation · distinct intervals · distinct digits) per dimension; nothing is O(N²) per element.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import PatternError

CHUNK_CELLS = 1 << 22  # (box, boundary) cells per numpy pass: bounds peak memory on long sequences


@dataclass(frozen=True)
class FlatBlocks:
    nonempty: np.ndarray  # int64, per Q block: number of non-empty KV blocks
    full: np.ndarray      # int64, per Q block: number of full KV blocks
    kv_blocks: int        # ceil(N_kv / TK)


def _ceil_div(a, b):
    return -(-a // b)


def flat_boxes(a: int, e: int, extents: tuple[int, ...]) -> list[list[tuple[int, int]]]:
    """The flat interval ``[a, e)`` of a row-major grid as ≤ 2r-1 boxes of per-dim ``(lo, hi)``."""
    if a >= e:
        return []
    if len(extents) == 1:
        return [[(a, e)]]
    slab, rest = math.prod(extents[1:]), extents[1:]
    (qa, ra), (qe, re) = divmod(a, slab), divmod(e, slab)
    if qa == qe:  # inside one slab: fix the leading digit, recurse
        return [[(qa, qa + 1)] + box for box in flat_boxes(ra, re, rest)]
    out = []
    if ra:  # ragged head: the end of slab qa
        out += [[(qa, qa + 1)] + box for box in flat_boxes(ra, slab, rest)]
        qa += 1
    if qa < qe:  # whole slabs
        out.append([(qa, qe)] + [(0, n) for n in rest])
    if re:  # ragged tail: the start of slab qe
        out += [[(qe, qe + 1)] + box for box in flat_boxes(0, re, rest)]
    return out


def axis_prefix_counts(rule, lq: int, lkv: int, lo: np.ndarray, hi: np.ndarray,
                       values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For query intervals ``[lo, hi)`` (raw indices, non-empty) of one dimension: ``|U ∩ [0, v)|``
    and ``|C ∩ [0, v)|`` for every raw key position ``v`` in ``values``, as (intervals, values)
    arrays. U: keys kept by some query of the interval; C: keys kept by all of them."""
    lo, hi = lo[:, None], hi[:, None]
    f_union = np.zeros((len(lo), len(values)), dtype=np.int64)
    f_common = np.zeros_like(f_union)
    for g in rule.groups(lq, lkv):  # groups are disjoint in queries and keys: counts add up
        start, stop = rule.bounds(np.arange(g.q_len, dtype=np.int64), g)
        keys = np.arange(g.kv_len, dtype=np.int64)
        qa = np.searchsorted(stop, keys, side="right")   # first query with stop > j
        qb = np.searchsorted(start, keys, side="right")  # one past the last query with start <= j
        covered = np.concatenate([[0], np.cumsum(qa < qb)])
        # The interval's queries in this group, as local indices [il, ih).
        il = np.clip(_ceil_div(lo - g.offset, g.step), 0, g.q_len)
        ih = np.clip(_ceil_div(hi - g.offset, g.step), 0, g.q_len)
        jv = np.clip(_ceil_div(values[None, :] - g.offset, g.step), 0, g.kv_len)  # keys below v
        # Some query of [il, ih) covers j iff qa(j) < ih, qb(j) > il and j is covered at all:
        # the covered keys of [u_lo, u_hi).
        u_lo = np.searchsorted(qb, il, side="right")
        u_hi = np.where(il < ih, np.maximum(np.searchsorted(qa, ih, side="left"), u_lo), u_lo)
        f_union += covered[np.clip(jv, u_lo, u_hi)] - covered[u_lo]
        # Every query covers j iff qa(j) <= il and qb(j) >= ih; queries of two groups share none.
        c_lo = np.searchsorted(qb, ih, side="left")
        whole = (ih - il) == (hi - lo)
        c_hi = np.where(whole, np.maximum(np.searchsorted(qa, il, side="right"), c_lo), c_lo)
        f_common += np.clip(jv, c_lo, c_hi) - c_lo
    return f_union, f_common


@dataclass(frozen=True)
class _AxisTable:
    """One dimension's counts for its distinct intervals (rows) at its distinct boundary digits v
    (columns). ``union`` and ``common`` each hold ``(F(v), [v in S], |S|)`` for S = U or C."""

    interval: np.ndarray  # per box: the row of its interval
    digit: np.ndarray     # per block boundary: the column of its digit
    union: tuple
    common: tuple


def _axis_table(rule, lq, lkv, lo, hi, digits, dtype) -> _AxisTable:
    pairs, interval = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
    vals, digit = np.unique(digits, return_inverse=True)
    n = len(vals)
    # Membership is F(v + 1) - F(v); |S| is F(lkv). Each interval and digit is evaluated once.
    points = np.concatenate([vals, vals + 1, [lkv]])
    sets = [(f[:, :n].astype(dtype), (f[:, n:2 * n] - f[:, :n]).astype(dtype), f[:, -1].astype(dtype))
            for f in axis_prefix_counts(rule, lq, lkv, pairs[:, 0], pairs[:, 1], points)]
    return _AxisTable(interval.reshape(-1), digit.reshape(-1), *sets)


def _prefix_product_counts(tables, which: str) -> np.ndarray:
    """``|∏ S_d ∩ [0, m)|`` for each box (rows) and each block boundary m: the digit DP
    ``Σ_d [m_e ∈ S_e, e < d] · F_d(m_d) · ∏_{e>d} |S_e|``, in Horner form from the last digit."""
    count, lower = None, None  # lower: ∏_{e>d} |S_e| per box (every lower digit is free)
    for t in reversed(tables):
        below, member, total = (x[t.interval] for x in getattr(t, which))
        term = np.take(below if lower is None else below * lower[:, None], t.digit, axis=1)
        if count is None:
            count = term
        else:
            count *= np.take(member, t.digit, axis=1)  # lower digits count only if m_d is in S_d
            count += term
        lower = total if lower is None else lower * total
    return count


def _classify(rules, q_extents, kv_extents, tq, tk):
    """Yield (nonempty, full) boolean (Q blocks x KV blocks) matrices, a chunk of Q blocks at a time."""
    n_q, n_kv = math.prod(q_extents), math.prod(kv_extents)
    kv_blocks = _ceil_div(n_kv, tk)
    bounds = np.minimum(np.arange(kv_blocks + 1, dtype=np.int64) * tk, n_kv)
    # Mixed-radix digits of each boundary; n_kv itself gets leading digit kv_extents[0].
    strides = [math.prod(kv_extents[d + 1:]) for d in range(len(kv_extents))]
    digits = [bounds // s if d == 0 else (bounds // s) % kv_extents[d] for d, s in enumerate(strides)]
    dtype = np.int32 if n_kv < 2**31 else np.int64  # counts never exceed n_kv: halve traffic
    q_blocks = _ceil_div(n_q, tq)
    step = max(1, CHUNK_CELLS // ((2 * len(rules) - 1) * (kv_blocks + 1)))
    for b0 in range(0, q_blocks, step):  # chunks of Q blocks bound the (box, boundary) arrays
        b1 = min(b0 + step, q_blocks)
        boxes = [flat_boxes(b * tq, min((b + 1) * tq, n_q), q_extents) for b in range(b0, b1)]
        starts = np.cumsum([0] + [len(bx) for bx in boxes[:-1]])  # each Q block's first box
        flat = np.array([box for bx in boxes for box in bx], dtype=np.int64)  # (boxes, r, 2)
        tables = [_axis_table(r, lq, lkv, flat[:, d, 0], flat[:, d, 1], digits[d], dtype)
                  for d, (r, lq, lkv) in enumerate(zip(rules, q_extents, kv_extents))]
        union, common = (np.diff(_prefix_product_counts(tables, w), axis=1) for w in ("union", "common"))
        nonempty = np.logical_or.reduceat(union > 0, starts, axis=0)
        full = np.logical_and.reduceat(common == tk, starts, axis=0)
        complete = (np.arange(b0, b1) + 1) * tq <= n_q  # a padded Q block is never full
        yield nonempty, full & complete[:, None]


def _check(rules, q_extents, kv_extents, q_block, kv_block):
    if not rules or not len(rules) == len(q_extents) == len(kv_extents):
        raise PatternError(f"need one rule per dimension: got {len(rules)} rules for q extents "
                           f"{tuple(q_extents)} and kv extents {tuple(kv_extents)}")
    if min(q_block, kv_block, *q_extents, *kv_extents) <= 0:
        raise PatternError(f"block sizes ({q_block}, {kv_block}) and extents must be positive")


def flat_block_counts(rules, q_extents, kv_extents, q_block: int, kv_block: int) -> FlatBlocks:
    """Per Q block: non-empty and full KV blocks of the row-major flattened pattern."""
    _check(rules, q_extents, kv_extents, q_block, kv_block)
    nonempty, full = [], []
    for ne, fu in _classify(rules, tuple(q_extents), tuple(kv_extents), q_block, kv_block):
        nonempty.append(ne.sum(axis=1, dtype=np.int64))
        full.append(fu.sum(axis=1, dtype=np.int64))
    return FlatBlocks(np.concatenate(nonempty), np.concatenate(full),
                      _ceil_div(math.prod(kv_extents), kv_block))


def flat_block_classes(rules, q_extents, kv_extents, q_block: int, kv_block: int) -> np.ndarray:
    """int8 matrix (Q blocks x KV blocks): 0 empty, 1 partial, 2 full (used to draw tile maps)."""
    _check(rules, q_extents, kv_extents, q_block, kv_block)
    chunks = [ne.astype(np.int8) + fu for ne, fu in
              _classify(rules, tuple(q_extents), tuple(kv_extents), q_block, kv_block)]
    return np.concatenate(chunks, axis=0)
