"""A paper's claim next to attnsim's bounds: consistent, above our upper bound, or not comparable.

The upper bound on a kernel speedup versus dense attention is the FLOP bound (dense kept pairs /
pattern kept pairs, with the baseline the paper used: causal for causal patterns): a sparse
kernel beats it only if the dense kernel it is compared with wastes more time per FLOP than the
sparse one (an unfused or older dense kernel, a different precision). End-to-end claims mix in
everything that is not attention, so they are shown but not judged.
"""
from __future__ import annotations

from dataclasses import dataclass

from attnsim.errors import AttnsimError
from attnsim.patterns import REGISTRY, Causal, Dense

from . import CLAIM_TOLERANCE, Case

WORKLOAD_KEYS = ("seq", "tokens", "batch", "heads", "kv_heads", "head_dim", "v_head_dim", "dtype", "phase")
# Unstated, these take a default: speedups versus dense barely depend on them (the FLOP bound not at all).
DEFAULTABLE = {"batch": 1, "heads": 1, "kv_heads": None, "head_dim": 128, "v_head_dim": None, "dtype": "bf16"}
INT_KEYS = ("seq", "batch", "heads", "kv_heads", "head_dim", "v_head_dim")
# case YAML parameter -> CLI flag name (where they differ)
PARAM_FLAG = {"tile": "sta_tile"}
JUDGED_SCOPES = ("kernel", "layer")


@dataclass(frozen=True)
class Verdict:
    case: str
    verdict: str          # consistent | claim above our upper bound | not comparable
    reason: str
    claim: float | None
    bounds: dict | None   # flop / tile / predicted speedups, when attnsim could price the case
    hw: str | None


def _flag(value):
    if isinstance(value, bool):
        return "all" if value else "0"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return None if value is None else str(value)


def _spec(case: Case):
    """(workload, pattern, baseline, notes) from the case's YAML, through the CLI's validation."""
    from attnsim.spec import PATTERN_FLAGS, build_pattern, build_workload

    wl_raw, pat = case.raw["workload"], case.raw["pattern"]
    flags = {"seq": None, "tokens": None, "kv_seq": None, "batch": 1, "heads": 1, "kv_heads": None,
             "head_dim": 128, "v_head_dim": None, "dtype": "bf16", "phase": "fwd", "decode_tokens": 1}
    notes = []
    for key in WORKLOAD_KEYS:
        if key not in wl_raw:
            continue
        value = wl_raw[key]
        valid = isinstance(value, int) if key in INT_KEYS else (
            value in ("bf16", "fp16", "fp32", "tf32", "fp8") if key == "dtype" else True)
        if not valid and key in DEFAULTABLE:
            notes.append(f"{key} not stated, {DEFAULTABLE[key] or 'as heads'} assumed")
            continue
        if not valid:
            raise AttnsimError(f"workload.{key} is {value!r}, not a usable value")
        flags[key] = _flag(value) if key == "tokens" else value
    params = pat.get("params") or {}
    flags.update({k: None for k in PATTERN_FLAGS}, pattern=pat["name"])
    for key, value in params.items():
        flag = PARAM_FLAG.get(key, key)
        if flag in PATTERN_FLAGS:
            flags[flag] = _flag(value) if flag in ("window", "dilation", "stride", "causal", "sta_tile") else value
    wl, pattern = build_workload(flags), build_pattern(flags)
    pattern.check(wl)
    causal = getattr(pattern, "causal", False)
    baseline = Causal() if (pattern.name == "causal" or causal is True) else Dense()
    return wl, pattern, baseline, notes


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def judge(case: Case, hw: str | None = None) -> Verdict:
    claim = case.claim
    value, metric, scope = _number(claim.get("value")), claim.get("metric"), str(claim.get("scope"))
    profile = hw or case.raw["hardware"].get("profile")
    compare = claim.get("compare")
    if compare is not None and compare not in ("dense", "causal"):
        return Verdict(case.name, "not comparable", f"the baseline is not full attention: {compare}",
                       value, None, profile)
    if case.raw["pattern"]["name"] not in REGISTRY:
        return Verdict(case.name, "not comparable", f"pattern {case.raw['pattern']['name']!r} is not in "
                       "attnsim yet (docs/patterns.md lists what is)", value, None, profile)
    try:
        from attnsim.predict_api import predict

        wl, pattern, baseline, notes = _spec(case)
        r = predict(wl, pattern, profile, baseline=baseline)
    except AttnsimError as err:
        return Verdict(case.name, "not comparable", f"cannot price the paper's setting: {err}", value, None, profile)
    s = r.speedup_vs_dense
    bounds = {"flop": s["flop"], "tile": s["tile"], "predicted": s["predicted"], "baseline": baseline.name}
    assumed = f" ({'; '.join(notes)})" if notes else ""
    if value is None:
        return Verdict(case.name, "not comparable", "the paper's number was not found", None, bounds, profile)
    if metric not in ("speedup", "flops_reduction"):
        return Verdict(case.name, "not comparable", f"the claim is a {metric}, attnsim predicts speedups",
                       value, bounds, profile)
    if metric == "speedup" and scope not in JUDGED_SCOPES:
        return Verdict(case.name, "not comparable", f"{scope} claim: attention is only part of that time "
                       "(bounds shown are attention-only)", value, bounds, profile)
    if value > s["flop"] * CLAIM_TOLERANCE:
        why = ("counted FLOPs do not drop that much" if metric == "flops_reduction" else
               "the baseline must spend more time per FLOP than the sparse kernel (an unfused, older or "
               "lower-precision dense kernel), or the setting differs from the one recorded")
        return Verdict(case.name, "claim above our upper bound", f"{value:g}x > FLOP bound "
                       f"{s['flop']:.2f}x vs {baseline.name}: {why}{assumed}", value, bounds, profile)
    return Verdict(case.name, "consistent", f"{value:g}x <= FLOP bound {s['flop']:.2f}x vs {baseline.name} "
                   f"(attnsim predicts {s['predicted']:.2f}x on {r.hw.name}){assumed}", value, bounds, profile)
