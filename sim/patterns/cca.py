"""CCA / CCGQA: Compressed Convolutional Attention (Figliolia et al. 2025, Zyphra, arXiv 2510.04476).

Q, K and V are down-projected to a latent ``E / C`` wide and the *whole* attention runs there
(§II-B). attnsim keeps the head dim and divides the heads by ``C`` (the paper's runs: "CCA with 4
query heads and 4 kv heads" at E = 2048; ZAYA1 ``modular_zaya.py``: 16 -> 8 query heads of 128):
``Hq = H / C`` query heads and ``Hk = Hkv / C`` KV heads, so ``--kv-heads`` below ``--heads``
gives CCGQA with ``C1 = C`` and ``C2 = C H / Hkv`` (KV heads shared in the latent, §II-B).

The timed kernel (§IV, App. D.1) fuses, as prologue of an online-softmax attention on the
latents: on the packed ``[q, k]`` latent of ``(Hq + Hk) D`` channels a depth-wise causal
sequence convolution (``k_seq`` taps) then a head-grouped convolution (``Hq + Hk`` groups of
``D -> D`` channels, ``k_ch`` taps), the q-k-mean (``(q_pre + repeat(k_pre)) / 2`` added to q,
its group mean added to k: Listing 1), L2 normalisation with ``sqrt(D)`` scaling and a key
temperature, RoPE, and value-shift (half the V heads from the previous token: a load offset).
The down/up projections are not in that kernel and are not counted (as for every pattern).
Kernel sizes default to ZAYA1's ``cca_time0 = cca_time1 = 2`` (the paper gives no sizes).

Paper Table II writes the channel-conv term of CCA as ``e^2 k_ch / h``; its CCGQA rule (replace
``e`` by ``E/C1 + E/C2`` and ``h`` by ``hq + hk``) and Listing 1 give ``2 e^2 k_ch / h`` for CCA,
which is what is counted here (per token ``(Hq + Hk) D x D k_ch`` multiply-adds).

Decode: the new tokens' q/k latents are convolved with the carried conv state (``k_seq - 1``
inputs and ``k_ch - 1`` first-conv outputs), their K and V appended to the latent cache.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PatternError
from ..workload import Workload
from .base import Flag, Pattern
from .flagvals import causal_switch
from .library import Causal, Dense
from .opgraph import Op, build_graph

ZAYA1_CONV_TAPS = 2  # cca_time0 and cca_time1 in Zyphra's ZAYA1 config
SUM_SQUARES_OPS = 2  # per element of an L2 norm: square, add
SCALE_OPS = 2        # per element: x * sqrt(D) / norm
ROPE_OPS = 3         # per element: x cos - rot(x) sin


@dataclass(frozen=True)
class CCA(Pattern):
    """CCA / CCGQA (arXiv 2510.04476 §II-B, Listing 1, Table II): latent attention with heads / C,
    after the fused convolution, q-k-mean, norm and RoPE prologue (see the module docstring)."""

    compression: int
    causal: bool = False
    conv_seq: int = ZAYA1_CONV_TAPS  # k_seq: depth-wise causal sequence conv taps
    conv_ch: int = ZAYA1_CONV_TAPS   # k_ch: taps of the head-grouped channel conv

    name = "cca"
    flags = frozenset({"compression", "causal"})
    cli_flags = (Flag("compression", "int", "latent compression C: heads and KV heads run /C "
                      "(--kv-heads < --heads: CCGQA)."),)

    def check(self, wl: Workload) -> None:
        c = self.compression
        if c <= 0:
            raise PatternError(f"--compression must be positive, got {c}")
        if wl.q_heads % c:
            raise PatternError(f"--compression {c} must divide --heads {wl.q_heads}: CCA runs heads/C latent "
                               "query heads of --head-dim (e.g. --heads 16 --compression 4)")
        if wl.kv_heads % c:
            raise PatternError(f"--compression {c} must divide --kv-heads {wl.kv_heads}: CCGQA runs "
                               "kv-heads/C latent KV heads")
        if self.conv_seq <= 0 or self.conv_ch <= 0:
            raise PatternError(f"CCA convolution taps must be positive, got {self.conv_seq} and {self.conv_ch}")
        if wl.grid is not None and len(wl.grid) > 1:
            raise PatternError("--pattern cca is for 1D sequences (its convolutions run along the sequence): "
                               "use --seq, not --tokens")
        if wl.phase in ("bwd", "fwd+bwd"):
            raise PatternError("--pattern cca models --phase fwd and decode; the backward of its fused "
                               "convolution prologue is not modelled yet")
        if wl.phase == "fwd" and wl.q_len != wl.kv_len:
            raise PatternError("--pattern cca is self-attention (q and k leave one convolution): drop --kv-seq, "
                               "or use --phase decode for a KV cache")

    def effective_workload(self, wl: Workload) -> Workload:
        return wl.with_(q_heads=wl.q_heads // self.compression, kv_heads=wl.kv_heads // self.compression)

    def layout(self, wl: Workload):
        return (Causal() if self.causal else Dense()).layout(wl)

    def params(self) -> dict:
        return {"compression": self.compression, "causal": int(self.causal), "conv_seq": self.conv_seq,
                "conv_ch": self.conv_ch}

    def assumptions(self, wl: Workload) -> list[str]:
        kind = "CCA" if wl.q_heads == wl.kv_heads else f"CCGQA (KV compression {wl.q_heads // wl.kv_heads}x more)"
        return [f"{kind}: attention in the latent with {wl.q_heads} query / {wl.kv_heads} KV heads of the "
                "baseline's head dims (heads / C); the dense baseline keeps the workload's heads",
                f"CCA kernel (arXiv 2510.04476 §IV, D.1): causal depth-wise conv ({self.conv_seq} taps) and "
                f"head-grouped conv ({self.conv_ch} taps, on tensor cores) on the q/k latents, q-k-mean, L2 norm "
                "with key temperature, full RoPE (tables not counted), value-shift as a load offset, then flash "
                "attention; down/up projections outside the kernel are not counted (ZAYA1 conv sizes, inferred)",
                "CCA decode: the new tokens' latents and the conv state are read, their K/V appended to the "
                "latent cache and the conv state rewritten"]

    # -- the fused kernel's ops ---------------------------------------------------------------
    def first_conv_rows(self, wl: Workload) -> int:
        """Positions the sequence conv computes: Listing 1 pads k_seq + k_ch - 2 zeros in front of
        the sequence, so the channel conv's first taps see k_ch - 1 extra first-conv outputs (its
        bias on zeros); decode carries those outputs in the conv state instead."""
        extra = 0 if wl.phase == "decode" else self.conv_ch - 1
        return wl.batch * (wl.q_len + extra)

    def op_graph(self, wl: Workload, pairs: int):
        e, eo, b, hq, hk = wl.element_bytes, wl.output_bytes, wl.batch, wl.q_heads, wl.kv_heads
        n, m, d, dv = wl.q_len, wl.kv_len, wl.qk_head_dim, wl.v_head_dim
        ch = (hq + hk) * d                    # packed q/k latent channels
        tokens = b * n                        # tokens whose q and k are built (decode: the new ones)
        cached = b * (m - n)                  # K/V of earlier tokens, read from the latent cache
        decode = wl.phase == "decode"
        state = {"conv_state": b * (self.conv_seq + self.conv_ch - 2) * ch * e} if decode else {}
        params = {"cca_params": (ch * (self.conv_seq + d * self.conv_ch + 2) + hk) * e}  # taps, biases, temp
        scores = b * hq * pairs
        new_k = {"k_new": tokens * hk * d * e} if decode else {}
        decode_out = {"v_new": tokens * hk * dv * e, "conv_state_new": state["conv_state"]} if decode else {}
        return build_graph([
            Op("conv_seq", "cca", other_flops=self.first_conv_rows(wl) * ch * (2 * self.conv_seq + 1),
               reads={"qk_latent": tokens * ch * e, **state, **params}, writes={"qk_conv0": 0}),
            Op("conv_ch", "cca", matmul_flops=2 * tokens * ch * d * self.conv_ch, side="qk",
               other_flops=tokens * ch, reads={"qk_conv0": 0, **state, **params}, writes={"qk_conv": 0}),
            # (q_pre + repeat(k_pre)) / 2: 2 per q element; its group mean: G per k element = 1
            # per q element; adding the means to q and k
            Op("qk_mean", "cca", other_flops=tokens * d * (4 * hq + hk),
               reads={"qk_latent": tokens * ch * e, "qk_conv": 0}, writes={"qk_mixed": 0}),
            # per head vector: sum of squares and a sqrt; per element a scale (and the key temperature)
            Op("qk_norm", "cca", exp=hk,
               other_flops=tokens * (hq * ((SUM_SQUARES_OPS + SCALE_OPS) * d + 1)
                                     + hk * ((SUM_SQUARES_OPS + SCALE_OPS + 1) * d + 1)),
               reads={"qk_mixed": 0}, writes={"qk_normed": 0}),
            Op("rope", "cca", other_flops=ROPE_OPS * tokens * (hq + hk) * d, reads={"qk_normed": 0},
               writes={"q_lat": 0, "k_lat": 0, **new_k}),
            Op("qk", "cca", matmul_flops=2 * scores * d, side="qk", exp=scores, other_flops=4 * scores,
               per_pair=True, reads={"q_lat": 0, "k_lat": 0, "k_cache": cached * hk * d * e}, writes={"p": 0}),
            Op("pv", "cca", matmul_flops=2 * scores * dv, side="pv", per_pair=True, other_flops=b * hq * n * dv,
               reads={"p": 0, "v_latent": tokens * hk * dv * e, "v_cache": cached * hk * dv * e},
               writes={"o": b * n * hq * dv * eo, **decode_out}),
        ])

    @classmethod
    def from_flags(cls, f: dict) -> "CCA":
        if f["compression"] is None:
            raise PatternError("--pattern cca needs --compression (e.g. --heads 16 --compression 4; "
                               "--kv-heads 8 for CCGQA)")
        return cls(compression=f["compression"], causal=causal_switch(f, "cca"))

    # -- closed forms ------------------------------------------------------------------------
    @classmethod
    def symbolic(cls, causal: bool, rank: int) -> "CCA":
        return cls(compression=1, causal=causal)

    def formula_values(self, wl: Workload) -> dict:
        return {"C": self.compression, "k_seq": self.conv_seq, "k_ch": self.conv_ch}

    def closed_form(self, sp, sym: dict, phase: str):
        from ..formulas import formula  # lazy: attnsim.formulas imports this package

        if phase in ("bwd", "fwd+bwd"):
            raise PatternError("--pattern cca models --phase fwd and decode only")
        b, h, hkv, n, m, d, dv, e, eo, c = (sym[x] for x in ("B", "H", "Hkv", "N", "M", "D", "Dv", "e", "eo", "C"))
        k0, k1 = sp.symbols("k_seq k_ch", positive=True, integer=True)
        hq, hk = h / c, hkv / c
        base = formula(Causal() if self.causal else Dense(), phase)
        pairs = base.exprs["pairs_per_head"]
        ch = (hq + hk) * d
        inputs = e * (b * n * ch + b * n * hk * dv + ch * (k0 + d * k1 + 2) + hk)  # latents, V, conv params
        outputs = eo * b * n * hq * dv
        if phase == "decode":  # cache and conv state in; new K/V and conv state out
            state = e * b * (k0 + k1 - 2) * ch
            inputs += e * b * (m - n) * hk * (d + dv) + state
            outputs += e * b * n * hk * (d + dv) + state
        exprs = {"pairs_per_head": pairs,
                 "matmul_flops": 2 * b * hq * pairs * (d + dv) + 2 * b * n * ch * d * k1,
                 "exp": b * hq * pairs + hk,
                 "compulsory_bytes": inputs + outputs}
        meanings = {"C": "CCA compression (--compression): H/C query, Hkv/C KV heads",
                    "k_seq": "CCA sequence-conv taps", "k_ch": "CCA channel-conv taps"}
        return exprs, meanings, (*base.assumes, "C divides H and Hkv", "fwd: N = M")
