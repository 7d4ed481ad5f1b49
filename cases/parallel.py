"""Context-parallel cases (cases/parallel/*.yaml): a paper's multi-GPU setting priced by
attnsim.hwmodels.contextpar, scheme by scheme, and its claim judged against what G devices can give.

A speedup claim gets three readings, because "scale up attention by X" is ambiguous:

- ``parallel``: the same attention kernel on 1 device vs G devices. G devices give at most G x
  (perfect scaling); attnsim's prediction is the best scheme's single-device time / its total.
- ``vs vanilla``: against vanilla multi-head attention on 1 device, which writes the N x N scores
  to memory: its roofline with the unfused bytes (attnsim.counting: 4 passes over the scores), an
  optimistic time for vanilla, over the best scheme's time.
- ``length``: the longest sequence G devices hold (fused attention, activations linear in N / G)
  over the longest vanilla attention holds on one device (activations with two N x N score
  matrices), from the profile's memory size.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from attnsim.counting import count
from attnsim.errors import AttnsimError
from attnsim.hwmodels import Profile, load_profile, roofline
from attnsim.hwmodels.contextpar import SCHEMES, CPResult, Cluster, price_context_parallel
from attnsim.hwmodels.interconnect import load_interconnect
from attnsim.patterns import Dense
from attnsim.shipped import shipped_files
from attnsim.spec import build_pattern, build_workload
from attnsim.workload import Workload

from . import CLAIM_TOLERANCE

KEYS = ("schema_version", "name", "title", "arxiv", "source", "cluster", "workload", "pattern", "schemes",
        "claim", "notes")
CLUSTER_KEYS = {"gpus", "gpus_per_node", "hw", "intra", "inter"}
RUN_KEYS = {"layout", "ulysses_degree"}
WORKLOAD_KEYS = {"seq", "batch", "heads", "kv_heads", "head_dim", "dtype", "phase"}


@dataclass(frozen=True)
class ParallelCase:
    name: str
    title: str
    raw: dict

    @property
    def claim(self) -> dict:
        return self.raw["claim"]


def parallel_case_paths() -> dict[str, Path]:
    return shipped_files("attnsim.cases", "parallel")


def _check(raw, where: str) -> None:
    if not isinstance(raw, dict):
        raise AttnsimError(f"{where}: a case is a YAML mapping")
    missing = [k for k in KEYS if k not in raw]
    unknown = sorted(set(raw) - set(KEYS))
    if missing or unknown:
        key = missing[0] if missing else unknown[0]
        raise AttnsimError(f"{where}: {'missing' if missing else 'unknown'} key {key!r} (keys: {', '.join(KEYS)})")
    for section, allowed in (("cluster", CLUSTER_KEYS), ("workload", WORKLOAD_KEYS)):
        extra = sorted(set(raw[section]) - allowed)
        if extra:
            raise AttnsimError(f"{where}: {section}.{extra[0]} is unknown; allowed: {', '.join(sorted(allowed))}")
    for scheme, options in raw["schemes"].items():
        if scheme not in SCHEMES or set(options or {}) - RUN_KEYS:
            raise AttnsimError(f"{where}: schemes.{scheme} must be one of {', '.join(SCHEMES)} with options "
                               f"from {', '.join(sorted(RUN_KEYS))}")
    if raw["name"] != Path(where).stem:
        raise AttnsimError(f"{where}: name {raw['name']!r} must equal the file name")


def load_parallel_case(name: str) -> ParallelCase:
    paths = parallel_case_paths()
    if name not in paths:
        raise AttnsimError(f"--case {name!r}: no such parallel case; use one of {', '.join(sorted(paths))} "
                           "(attnsim cp --list-cases)")
    raw = yaml.safe_load(paths[name].read_text())
    _check(raw, str(paths[name]))
    return ParallelCase(raw["name"], raw["title"], raw)


def list_parallel_cases() -> list[ParallelCase]:
    return [load_parallel_case(n) for n in sorted(parallel_case_paths())]


def case_setting(case: ParallelCase) -> tuple[Workload, object, Cluster]:
    """The case's workload, pattern and cluster, through the CLI's validation."""
    w, c = case.raw["workload"], case.raw["cluster"]
    flags = {"seq": w["seq"], "tokens": None, "kv_seq": None, "batch": w.get("batch", 1), "heads": w["heads"],
             "kv_heads": w.get("kv_heads"), "head_dim": w["head_dim"], "v_head_dim": None,
             "dtype": w.get("dtype", "bf16"), "phase": w.get("phase", "fwd"), "decode_tokens": 1,
             "pattern": case.raw["pattern"]}
    inter = load_interconnect(c["inter"], "cluster.inter") if c.get("inter") else None
    intra = load_interconnect(c["intra"], "cluster.intra")
    cluster = Cluster(load_profile(c["hw"]), c["gpus"], c["gpus_per_node"], intra, inter)
    return build_workload(flags), build_pattern(flags), cluster


def run_schemes(case: ParallelCase) -> dict[str, CPResult | str]:
    """Each scheme the case lists, priced; a scheme that cannot run gets its one-line reason."""
    wl, pattern, cluster = case_setting(case)
    out: dict[str, CPResult | str] = {}
    for scheme, options in case.raw["schemes"].items():
        try:
            out[scheme] = price_context_parallel(wl, pattern, cluster, scheme, **(options or {}))
        except AttnsimError as err:
            out[scheme] = str(err)
    return out


def vanilla_s(wl: Workload, hw: Profile) -> float:
    """Vanilla multi-head attention on one device: the roofline with the unfused bytes (scores
    written and read back) in place of the compulsory ones. Optimistic for vanilla."""
    c = count(wl, Dense())
    return roofline(replace(c, bytes=replace(c.bytes, compulsory=c.bytes.unfused)), hw).time_s


def vanilla_bytes(wl: Workload, seq: int) -> int:
    """Activations of vanilla MHA at ``seq`` tokens: Q, K, V, O and the scores S and P (both live
    while softmax runs), in the input dtype."""
    b, h, e = wl.batch, wl.q_heads, wl.element_bytes
    qkvo = seq * b * (h * (wl.qk_head_dim + wl.v_head_dim) + wl.kv_heads * (wl.qk_head_dim + wl.v_head_dim)) * e
    return qkvo + 2 * b * h * seq * seq * e


def ring_bytes_per_device(wl: Workload, seq: int, gpus: int) -> int:
    """Activations of one ring rank at ``seq`` tokens: its Q, K, V, O shard, the K, V block being
    received, and the fp32 output accumulator and log-sum-exp (ring_flash_attn.py)."""
    n, b, e = seq // gpus, wl.batch, wl.element_bytes
    kv = b * n * wl.kv_heads * (wl.qk_head_dim + wl.v_head_dim) * e
    qo = b * n * wl.q_heads * (wl.qk_head_dim + wl.v_head_dim) * e
    return qo + 2 * kv + b * n * wl.q_heads * (wl.v_head_dim + 1) * 4


def longest_seq(fits) -> int:
    """The largest N >= 1 with ``fits(N)`` (monotone), by doubling then bisection; 0 if none."""
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


@dataclass(frozen=True)
class Reading:
    name: str
    value: float        # attnsim's number for this reading (a bound or an estimate)
    verdict: str        # consistent | claim above our upper bound | claim above our estimate
    reason: str


@dataclass(frozen=True)
class ParallelVerdict:
    case: str
    results: dict[str, CPResult | str]
    readings: tuple[Reading, ...]
    verdict: str        # consistent | claim above our upper bound | not comparable
    reason: str

    def to_dict(self) -> dict:
        return {"case": self.case, "verdict": self.verdict, "reason": self.reason,
                "readings": [r.__dict__ for r in self.readings],
                "schemes": {k: v.to_dict() if isinstance(v, CPResult) else {"error": v}
                            for k, v in self.results.items()}}


def _readings(value: float, wl: Workload, cluster: Cluster, best: CPResult) -> tuple[Reading, ...]:
    g, hw = cluster.gpus, cluster.hw
    memory = hw.get("memory_size_bytes")
    alone = longest_seq(lambda n: vanilla_bytes(wl, n) <= memory)
    spread = longest_seq(lambda n: ring_bytes_per_device(wl, n * g, g) <= memory) * g
    versus = vanilla_s(wl, hw) / best.total_s
    s = best.split.scheme
    rows = [("parallel", float(g), "claim above our upper bound",
             f"{g} devices give at most {g}x the same kernel on one "
             f"(attnsim: {best.single_device_s / best.total_s:.2f}x with {s})"),
            ("vs vanilla", versus, "claim above our estimate",
             f"{s} on {g} devices vs vanilla MHA (unfused roofline, optimistic for vanilla) on one at seq "
             f"{wl.q_len}: {versus:.1f}x"),
            ("length", spread / alone, "claim above our upper bound",
             f"longest sequence in {memory / 1e9:.0f} GB per device: vanilla {alone:,} on one, ring {spread:,} on "
             f"{g} (activations only)")]
    return tuple(Reading(n, v, "consistent" if value <= v * CLAIM_TOLERANCE else above, why)
                 for n, v, above, why in rows)


def judge_parallel(case: ParallelCase) -> ParallelVerdict:
    results = run_schemes(case)
    priced = [r for r in results.values() if isinstance(r, CPResult)]
    value, metric = case.claim.get("value"), case.claim.get("metric")
    if not priced:
        return ParallelVerdict(case.name, results, (), "not comparable", "no scheme can run this setting")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ParallelVerdict(case.name, results, (), "not comparable",
                               f"the paper's number was not found: attnsim prices the scale only ({value})")
    if metric != "speedup":
        return ParallelVerdict(case.name, results, (), "not comparable", f"the claim is a {metric}")
    wl, _, cluster = case_setting(case)
    best = min(priced, key=lambda r: r.total_s)
    readings = _readings(float(value), wl, cluster, best)
    ok = [r.name for r in readings if r.verdict == "consistent"]
    if readings[0].verdict == "consistent":
        return ParallelVerdict(case.name, results, readings, "consistent", readings[0].reason)
    if not ok:
        return ParallelVerdict(case.name, results, readings, "claim above our upper bound",
                               "above every reading's bound or estimate")
    return ParallelVerdict(case.name, results, readings, "not comparable",
                           f"{value:g}x is above the {readings[0].value:g}x a parallel speedup can reach; it fits "
                           f"only as: {', '.join(ok)} (the paper's definition was not found)")
