"""Named validation suites: (workload, pattern) points written as CLI flag values.

Configs are plain flag dicts (the same ones `attnsim predict` takes), so every stored
measurement can be rebuilt with :func:`attnsim.spec.build_workload` / ``build_pattern``.
Torch-free: listing a suite needs no kernels.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from attnsim.errors import AttnsimError

WORKLOAD_DEFAULTS = {"seq": None, "tokens": None, "kv_seq": None, "batch": 1, "heads": 1, "kv_heads": None,
                     "head_dim": 64, "v_head_dim": None, "dtype": "fp32", "phase": "fwd", "decode_tokens": 1}


@dataclass(frozen=True)
class Config:
    name: str
    family: str
    workload: dict
    pattern: dict                      # {"pattern": name, flag: value, ...}
    runners: tuple[str, ...] = field(default=())  # empty: every runner that supports it

    def flags(self) -> dict:
        return {**WORKLOAD_DEFAULTS, **self.workload, **self.pattern}

    def build(self):
        from attnsim.spec import build_pattern, build_workload

        f = self.flags()
        return build_workload(f), build_pattern(f)


def _cfg(family: str, pattern: dict, runners: tuple[str, ...] = (), **wl) -> Config:
    shape = ",".join(f"{k}={v}" for k, v in sorted(wl.items()))
    params = ",".join(f"{k}={v}" for k, v in sorted(pattern.items()) if k != "pattern")
    return Config(f"{family}[{shape}{';' + params if params else ''}]", family, wl, pattern, runners)


def smoke() -> list[Config]:
    """Seconds per point on 2 cores; one compiled FlexAttention point (its compile is ~20 s)."""
    fast = ("sdpa-flash", "sdpa-math", "unfused")
    return [
        _cfg("dense", {"pattern": "dense"}, fast, seq=256, heads=2),
        _cfg("dense", {"pattern": "dense"}, fast, seq=512, heads=2, head_dim=128),
        _cfg("causal", {"pattern": "causal"}, fast, seq=512, heads=2),
        _cfg("gqa-decode", {"pattern": "dense"}, fast, seq=4096, heads=8, kv_heads=2, phase="decode"),
        _cfg("sliding", {"pattern": "sliding", "window": "128", "causal": "all"}, ("flex", "unfused"),
             seq=1024, heads=2),
    ]


def cpu() -> list[Config]:
    """>= 20 shapes for each of six families on the CPU (fp32): dense, causal, sliding window,
    2D neighborhood, block-sparse top-k and GQA decode (+ dense baselines of the sparse shapes)."""
    out: list[Config] = []
    for seq, heads, d in itertools.product((256, 512, 1024, 2048, 4096), (1, 4), (64, 128)):
        out.append(_cfg("dense", {"pattern": "dense"}, ("sdpa-flash", "sdpa-math"), seq=seq, heads=heads, head_dim=d))
        out.append(_cfg("causal", {"pattern": "causal"}, ("sdpa-flash", "flex"), seq=seq, heads=heads, head_dim=d))
    for seq, w, heads in itertools.product((1024, 2048, 4096, 8192), (64, 128, 256, 512, 1024, 2048), (2,)):
        if w < seq:
            out.append(_cfg("sliding", {"pattern": "sliding", "window": str(w), "causal": "all"}, ("flex",),
                            seq=seq, heads=heads))
    for side, k in itertools.product((32, 48, 64, 96), (7, 13, 17, 25, 31)):
        out.append(_cfg("neighborhood-2d", {"pattern": "neighborhood", "window": f"{k}x{k}"}, ("natten", "flex"),
                        tokens=f"{side}x{side}", heads=2))
    for seq, k, causal in itertools.product((1024, 2048, 4096, 8192), (2, 4, 8), ("all", "0")):
        out.append(_cfg("block-topk", {"pattern": "block-topk", "block_size": "128", "top_k": k, "causal": causal},
                        ("flex-topk",), seq=seq, heads=2))
    for kv, heads, kvh in itertools.product((1024, 4096, 16384, 65536, 131072), (8, 32), (1, 8)):
        out.append(_cfg("gqa-decode", {"pattern": "dense"}, ("sdpa-flash", "sdpa-math"),
                        seq=kv, heads=heads, kv_heads=kvh, phase="decode"))
    return out + _dense_baselines(out)


def _dense_baselines(configs: list[Config]) -> list[Config]:
    """Dense attention on every sparse config's workload: the measured speedup's baseline."""
    have = {c.name for c in configs}
    out = []
    for c in configs:
        base = _cfg("dense", {"pattern": "dense"}, ("sdpa-flash",), **c.workload)
        if c.family not in ("dense", "gqa-decode") and base.name not in have:
            have.add(base.name)
            out.append(base)
    return out


def gpu() -> list[Config]:
    """The GPU suite: larger shapes, bf16, FlexAttention and NATTEN's fused kernels."""
    out: list[Config] = []
    fused = ("sdpa-flash", "sdpa-efficient", "flex")
    for seq, heads in itertools.product((1024, 4096, 8192, 16384, 32768), (8, 32)):
        for fam in ("dense", "causal"):
            out.append(_cfg(fam, {"pattern": fam}, fused, seq=seq, heads=heads, head_dim=128, dtype="bf16"))
    for seq, w in itertools.product((8192, 32768), (512, 2048, 8192)):
        out.append(_cfg("sliding", {"pattern": "sliding", "window": str(w), "causal": "all"}, ("flex",),
                        seq=seq, heads=16, head_dim=128, dtype="bf16"))
    for grid, k in itertools.product(("64x64", "128x128", "16x32x32"), ("7", "13", "31")):
        window = "x".join([k] * (grid.count("x") + 1))
        out.append(_cfg("neighborhood", {"pattern": "neighborhood", "window": window}, ("natten", "flex"),
                        tokens=grid, heads=8, head_dim=128, dtype="bf16"))
    for seq, k, causal in itertools.product((8192, 32768), (4, 16), ("all", "0")):
        out.append(_cfg("block-topk", {"pattern": "block-topk", "block_size": "128", "top_k": k, "causal": causal},
                        ("flex-topk",), seq=seq, heads=16, head_dim=128, dtype="bf16"))
    for kv, heads, kvh in itertools.product((8192, 65536, 131072), (32,), (1, 8, 32)):
        out.append(_cfg("gqa-decode", {"pattern": "dense"}, ("sdpa-flash", "sdpa-efficient", "sdpa-math"),
                        seq=kv, heads=heads, kv_heads=kvh, head_dim=128, dtype="bf16", phase="decode"))
    return out


DENSE_BASELINE_MAX_FLOPS = 2e10  # ~0.2 s of sdpa-flash on 2 cores: longer dense baselines are left out


def multiop() -> list[Config]:
    """The naive multi-op runners on the CPU (fp32), each point 5-200 ms on 2 cores: causal and
    non-causal linear attention, Linformer, agent attention and MoBA (>= 8 shapes each, and
    >= 16 per kernel so its 70 % train split holds the >= 10 rows calibrate needs: one per feature), plus
    sdpa-flash dense baselines of the shapes whose dense attention stays under
    DENSE_BASELINE_MAX_FLOPS. MoBA gathers each query's top_k blocks (top_k * block keys per
    query), so its shapes keep heads x queries x slots at 2^17-2^19."""
    out: list[Config] = []
    for seq, chunk in itertools.product((2048, 4096, 8192, 16384), (32, 64, 128)):
        out.append(_cfg("linear-causal", {"pattern": "linear", "chunk": chunk, "causal": "all"}, ("naive-linear",),
                        seq=seq, heads=8))
    for seq, heads in itertools.product((4096, 6144, 8192, 12288), (16, 32)):
        out.append(_cfg("linear", {"pattern": "linear", "causal": "0"}, ("naive-linear",), seq=seq, heads=heads))
    for seq, rank in itertools.product((4096, 6144, 8192, 10240, 12288), (32, 64, 128, 256)):
        out.append(_cfg("lowrank", {"pattern": "lowrank", "rank": rank}, ("naive-lowrank",), seq=seq, heads=8))
    for seq, agents in itertools.product((6144, 8192, 12288, 16384), (16, 32, 64, 128)):
        out.append(_cfg("agent", {"pattern": "agent", "agents": agents}, ("naive-agent",), seq=seq, heads=8))
    moba = ((1024, 16, 4), (1024, 32, 2), (1024, 32, 4), (1024, 64, 2), (1024, 64, 4), (1024, 128, 2),
            (2048, 16, 2), (2048, 16, 4), (2048, 32, 2), (2048, 32, 4), (2048, 64, 2),
            (4096, 8, 4), (4096, 16, 2), (4096, 16, 4), (4096, 32, 2), (4096, 64, 1))
    for i, (seq, block, k) in enumerate(moba):
        out.append(_cfg("moba", {"pattern": "moba", "block_size": str(block), "top_k": k,
                                 "causal": "all" if i % 2 == 0 else "0"}, ("naive-moba",), seq=seq, heads=2))
    return out + [c for c in _dense_baselines(out) if _dense_flops(c) <= DENSE_BASELINE_MAX_FLOPS]


def _dense_flops(cfg: Config) -> int:
    from attnsim.counting import count

    wl, pattern = cfg.build()
    return count(wl, pattern).flops.matmul


SUITES = {"smoke": smoke, "cpu": cpu, "gpu": gpu, "multiop": multiop}


def suite(name: str) -> list[Config]:
    if name not in SUITES:
        raise AttnsimError(f"--suite {name!r}: use one of {', '.join(SUITES)}")
    return SUITES[name]()
