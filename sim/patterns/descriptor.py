"""Compressed descriptor attention (FlashVGGT, Wang & Xu 2025, arXiv 2512.01540, Sec. 3; code
github.com/wzpscott/FlashVGGT, ``flashvggt/layers/attention.py``).

VGGT's global attention is dense self-attention over all ``F x P`` tokens of ``F`` frames (``P``
tokens per frame: ``S`` camera/register tokens, then the patch grid). FlashVGGT keeps the
queries at full resolution and replaces the keys and values by *descriptors*: per frame, the
``S`` special tokens plus the patch grid bilinearly downsampled by ``r`` (``D = S + (h//r)(w//r)``
descriptor tokens per frame), plus the full-resolution patch tokens (``P - S`` each) of
``K`` key frames (the first frame, the world-frame anchor, and the frames nearest to k-means
centres of the frame-mean tokens). Global attention becomes cross-attention of ``F P`` queries
over ``M' = F D + K (P - S)`` keys. ``--seq`` is ``F P``; ``--descriptors`` is ``D``.

Chunk-recursive online inference (``flashvggt_stream``), priced as ``--phase decode``: a chunk
of ``c`` new frames (``--decode-tokens c P``) attends the descriptors cached for the earlier
frames plus its own; ``--seq F P`` counts every frame so far. Only the chunk is resampled and
its descriptors are appended to the cache; the first frame's patch tokens enter the cache with
the first chunk (streaming keeps at most that one key frame).

Assumptions (said in ``assumptions``): resampling is done on K and V (FlashVGGT resamples the
hidden states before the K/V projection; bilinear weights sum to 1, so both give the same
descriptors), 4 taps x 2 FLOPs per output element; the k-means key-frame selection runs once
per model on frame means, not per attention layer, and is not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .base import Flag, Pattern
from .opgraph import Op, build_graph

BILINEAR_FLOPS = 8  # 4 taps, a multiply and an add each, per resampled element


@dataclass(frozen=True)
class Descriptor(Pattern):
    frames: int
    descriptors: int        # D: descriptor tokens per frame, special tokens included
    keyframes: int = 1      # K: frames whose full-resolution patch tokens are also keys
    special_tokens: int = 0  # S: camera + register tokens per frame (VGGT: 5), kept as descriptors

    name = "descriptor"
    tileable = False  # descriptors are new tokens, not a subset of the N x N problem's keys
    flags = frozenset({"frames", "descriptors", "keyframes", "special_tokens"})
    cli_flags = (
        Flag("frames", "int", "frames F in the sequence (--seq = F x tokens per frame)"),
        Flag("descriptors", "int", "descriptor tokens per frame, special tokens included (VGGT 37x37 "
                                   "patches at r=4: 9x9 + 5 = 86)"),
        Flag("keyframes", "int", "frames kept at full resolution as extra keys [default: 1, the first]"),
        Flag("special_tokens", "int", "camera + register tokens per frame, kept uncompressed [default: 0]"),
    )

    @classmethod
    def from_flags(cls, f: dict) -> "Descriptor":
        if f.get("frames") is None or f.get("descriptors") is None:
            raise PatternError("--pattern descriptor needs --frames and --descriptors (e.g. --frames 1000 "
                               "--descriptors 86 --special-tokens 5 for VGGT at r=4)")
        return cls(f["frames"], f["descriptors"], 1 if f.get("keyframes") is None else f["keyframes"],
                   f.get("special_tokens") or 0)

    # -- validation ----------------------------------------------------------------------
    def tokens_per_frame(self, wl: Workload) -> int:
        return wl.kv_len // self.frames

    def check(self, wl: Workload) -> None:
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern descriptor takes the frames' tokens as one sequence: --seq F x P")
        if self.frames <= 0:
            raise PatternError(f"--frames must be positive, got {self.frames}")
        if wl.kv_len % self.frames:
            raise PatternError(f"--frames {self.frames} must divide the {wl.kv_len} tokens of --seq "
                               "(every frame has the same tokens)")
        p = self.tokens_per_frame(wl)
        if not 0 <= self.special_tokens < p:
            raise PatternError(f"--special-tokens must be in [0, {p}) (the {p} tokens per frame), "
                               f"got {self.special_tokens}")
        if not self.special_tokens < self.descriptors <= p:
            raise PatternError(f"--descriptors must be in ({self.special_tokens}, {p}]: the special tokens plus "
                               f"at least one resampled patch token, at most the {p} tokens per frame; got "
                               f"{self.descriptors}")
        if not 0 <= self.keyframes <= self.frames:
            raise PatternError(f"--keyframes must be in [0, {self.frames}] (--frames), got {self.keyframes}")
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError("--pattern descriptor models --phase fwd and decode (chunk-recursive "
                               "streaming); its backward is not modelled")
        if wl.phase == "fwd" and wl.q_len != wl.kv_len:
            raise PatternError("--pattern descriptor is global self-attention over --seq F x P tokens: "
                               "no --kv-seq (the keys are its descriptors)")
        if wl.phase == "decode":
            if wl.q_len % p or wl.q_len > wl.kv_len:
                raise PatternError(f"--decode-tokens {wl.q_len} must be a chunk of whole frames: a multiple of "
                                   f"the {p} tokens per frame, at most --seq {wl.kv_len}")
            if self.keyframes > 1:
                raise PatternError("--keyframes must be 0 or 1 with --phase decode: chunk-recursive inference "
                                   "keeps only the first frame at full resolution")

    def layout(self, wl: Workload):
        raise PatternError("descriptor attention has no (query, key) mask: its keys are resampled tokens")

    def params(self) -> dict:
        return {"frames": self.frames, "descriptors": self.descriptors, "keyframes": self.keyframes,
                "special_tokens": self.special_tokens}

    def assumptions(self, wl: Workload) -> list[str]:
        stream = ["decode = one chunk of chunk-recursive streaming: the chunk is resampled, its descriptors are "
                  "appended to the cache (written), earlier frames' descriptors are read from it"]
        return ["FlashVGGT descriptor attention: full-resolution queries over per-frame descriptors (special "
                "tokens + bilinearly resampled patches, 8 FLOPs per resampled element) and the key frames' "
                "patch tokens; resampling priced on K and V (equal, by linearity, to FlashVGGT's resampling of "
                "the hidden states before the K/V projection); k-means key-frame selection (once per model) "
                "not counted"] + (stream if wl.phase == "decode" else [])

    # -- exact counts --------------------------------------------------------------------
    def keys(self, wl: Workload) -> int:
        """M' = F D + K (P - S): every frame's descriptors and the key frames' patch tokens."""
        return self.frames * self.descriptors + self.keyframes * (self.tokens_per_frame(wl) - self.special_tokens)

    def pairs_per_head(self, wl: Workload) -> int:
        return wl.q_len * self.keys(wl)

    def touched_keys(self, wl: Workload) -> int:
        return wl.kv_len

    def op_graph(self, wl: Workload, pairs: int):
        b, h, hkv, e, eo = wl.batch, wl.q_heads, wl.kv_heads, wl.element_bytes, wl.output_bytes
        d, dv, p = wl.qk_head_dim, wl.v_head_dim, self.tokens_per_frame(wl)
        row = b * hkv * (d + dv) * e  # one token's K and V over batch and KV heads
        keys = self.keys(wl)
        new_frames = wl.q_len // p if wl.phase == "decode" else self.frames
        first_chunk = new_frames == self.frames
        # descriptors made now: the new frames' own, plus the key frames' patches when they are new
        made = new_frames * self.descriptors + (self.keyframes * (p - self.special_tokens) if first_chunk else 0)
        kv_in = {"kv_new": new_frames * p * row} if wl.phase == "decode" else {"k": b * hkv * wl.kv_len * d * e,
                                                                             "v": b * hkv * wl.kv_len * dv * e}
        cached = {"kv_cache": (keys - made) * row} if keys > made else {}
        appended = {"cache_append": made * row} if wl.phase == "decode" else {}
        scores = b * h * pairs
        return build_graph([
            Op("compress", "compress",
               other_flops=BILINEAR_FLOPS * b * hkv * new_frames * (self.descriptors - self.special_tokens) * (d + dv),
               reads=kv_in, writes={"kv_desc": made * row, **appended}),
            Op("qk", "attention", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
               per_pair=True, reads={"q": b * h * wl.q_len * d * e, "kv_desc": made * row, **cached},
               writes={"p": 0}),
            Op("pv", "attention", matmul_flops=2 * scores * dv, side="pv", other_flops=b * h * wl.q_len * dv,
               per_pair=True, reads={"p": 0}, writes={"o": b * h * wl.q_len * dv * eo}),
        ])

    # -- closed forms --------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "Descriptor":
        return cls(frames=1, descriptors=1)

    def formula_values(self, wl: Workload) -> dict:
        return {"Fr": self.frames, "Dd": self.descriptors, "Kf": self.keyframes, "Sp": self.special_tokens}

    def closed_form(self, sp, sym: dict, phase: str):
        if phase not in ("fwd", "decode"):
            raise PatternError("--pattern descriptor models --phase fwd and decode only")
        b, h, hkv, n, m, d, dv, e, eo = (sym[x] for x in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo"))
        fr, dd, kf, s = sp.symbols("Fr Dd Kf Sp", positive=True, integer=True)
        p = m / fr
        keys = fr * dd + kf * (p - s)
        q, o = e * b * h * n * d, eo * b * h * n * dv
        if phase == "fwd":  # reads every token's K, V once to resample them
            compulsory = q + e * b * hkv * m * (d + dv) + o
            assumes = ("N = M = Fr x P",)
        else:  # the chunk's K, V in; cached descriptors in and the chunk's appended: every key once
            compulsory = q + o + e * b * hkv * (d + dv) * (n + keys)
            assumes = ("M = Fr x P, N = new frames x P",)
        # kept unfactored: the key count Fr Dd + Kf (M/Fr - Sp) stays readable
        exprs = {"pairs_per_head": n * keys, "matmul_flops": 2 * b * h * n * keys * (d + dv),
                 "exp": b * h * n * keys, "compulsory_bytes": compulsory}
        meanings = {"Fr": "frames", "Dd": "descriptor tokens per frame", "Kf": "key frames at full resolution",
                    "Sp": "special tokens per frame"}
        return exprs, meanings, assumes
