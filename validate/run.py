"""Run a suite: for each config and each runner that supports it, check the output against the
reference, time it, and store the measurement with attnsim's prediction made at that time."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field

from attnsim.errors import AttnsimError

from .store import Measurement, Store
from .suites import Config, suite as load_suite

DEFAULT_HW = {"cpu": "EPYC-2vCPU"}
EAGER_FLEX_WARNING = "flex_attention called without torch.compile"
REFERENCE_PASSES = 3  # scores, softmax and a temporary of one reference row chunk


@dataclass
class Outcome:
    measured: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)   # runner cannot run it, or it does not fit
    failed: list[dict] = field(default_factory=list)    # wrong output or a runtime error

    def to_dict(self) -> dict:
        return {"measured": self.measured, "skipped": self.skipped, "failed": self.failed}


def free_memory_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_needed_bytes(wl) -> int:
    """Inputs and outputs (fp32 copies), a runner's output, the reference's score chunks and the
    boolean mask."""
    from .runners import REFERENCE_CHUNK_BYTES

    tokens = wl.batch * (wl.q_heads * wl.q_len * (wl.qk_head_dim + 2 * wl.v_head_dim)
                         + wl.kv_heads * wl.kv_len * (wl.qk_head_dim + wl.v_head_dim))
    return 4 * tokens + REFERENCE_PASSES * REFERENCE_CHUNK_BYTES + wl.q_len * wl.kv_len


def default_hw(device: str) -> str:
    if device in DEFAULT_HW:
        return DEFAULT_HW[device]
    import torch

    name = torch.cuda.get_device_name(0)
    for key, profile in (("H200", "H200"), ("H100 PCIe", "H100-PCIe"), ("H100", "H100-SXM"), ("B200", "B200"),
                         ("A100", "A100-SXM4-80GB"), ("L40S", "L40S"), ("4090", "RTX-4090")):
        if key in name:
            return profile
    raise AttnsimError(f"no shipped profile matches GPU {name!r}: pass --hw PROFILE")


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise AttnsimError("--device cuda: no CUDA device visible to torch; use --device cpu")


def _pattern_json(cfg: Config) -> str:
    return json.dumps({"pattern": cfg.pattern, "workload": cfg.workload}, sort_keys=True)


def run_config(store: Store, run_id: int, cfg: Config, device: str, hw: str, runners, budget_s: float,
               out: Outcome) -> None:
    from attnsim.predict_api import predict

    from .runners import build_checked, make_inputs
    from .timing import measure

    wl, pattern = cfg.build()
    need, free = memory_needed_bytes(wl), free_memory_bytes(device)
    if need > free:
        out.skipped.append({"config": cfg.name, "kernel": "*", "reason": f"needs ~{need / 2**30:.1f} GiB, "
                            f"{free / 2**30:.1f} GiB free on {device}"})
        return
    chosen = [r for r in runners if not cfg.runners or r.name in cfg.runners]
    usable = []
    for r in chosen:
        ok, why = r.supports(wl, pattern, device)
        (usable.append(r) if ok else out.skipped.append({"config": cfg.name, "kernel": r.name, "reason": why}))
    if not usable:
        return
    prediction = predict(wl, pattern, hw).to_dict()
    x = make_inputs(wl, device)
    shared: dict = {}
    for r in usable:
        try:
            with warnings.catch_warnings():  # never time flex_attention's eager (unfused) fallback
                warnings.filterwarnings("error", message=EAGER_FLEX_WARNING)
                run, build_s, err = build_checked(r, wl, pattern, x, _expected(r, wl, pattern, x, shared))
                stats = measure(run, device, budget_s)
        except (ValueError, RuntimeError, UserWarning) as exc:  # wrong output, refused, or not compiled
            out.failed.append({"config": cfg.name, "kernel": r.name, "reason": str(exc).splitlines()[0]})
            continue
        m = Measurement(config=cfg.name, family=cfg.family, kernel=r.name, pattern=pattern.describe(),
                        pattern_json=_pattern_json(cfg), workload_json=json.dumps(cfg.workload, sort_keys=True),
                        hw_profile=hw, median_s=stats.median_s, iqr_s=stats.iqr_s, min_s=stats.min_s,
                        repeats=stats.repeats, compile_s=build_s, max_abs_err=err,
                        predicted_s=prediction["time_s"]["predicted"], prediction_json=json.dumps(prediction))
        store.add(run_id, m)
        out.measured.append({"config": cfg.name, "kernel": r.name, "median_s": stats.median_s,
                             "predicted_s": m.predicted_s})


def _expected(runner, wl, pattern, x, shared: dict):
    """The reference output for ``runner``: under its own selection for data-dependent patterns
    (whose pair count must then equal attnsim's), else the pattern's mask (computed once)."""
    from .runners import reference

    chosen = runner.selection(wl, pattern, x)
    if chosen is None:
        if "mask" not in shared:
            shared["mask"] = reference(wl, pattern, x)
        return shared["mask"]
    per_head = chosen.reshape(-1, wl.q_len * wl.kv_len).sum(axis=1)
    if (per_head != pattern.pairs_per_head(wl)).any():
        raise ValueError(f"{runner.name}: selected {sorted(set(per_head.tolist()))} pairs per head, attnsim "
                         f"counts {pattern.pairs_per_head(wl)}")
    return reference(wl, pattern, x, chosen)


def run_suite(name: str, device: str, db: str, hw: str | None = None, threads: int | None = None,
              budget_s: float = 0.5, only: tuple[str, ...] = (), progress: bool = True) -> Outcome:
    import torch

    from .env import environment
    from .runners import all_runners

    check_device(device)
    configs = [c for c in load_suite(name) if not only or c.family in only]
    if threads:
        torch.set_num_threads(threads)
    hw = hw or default_hw(device)
    runners, out = all_runners(), Outcome()
    with Store(db) as store:
        run_id = store.start_run(name, device, environment(device))
        from rich.progress import Progress

        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task(f"suite {name} on {device}", total=len(configs))
            for cfg in configs:
                bar.update(task, description=cfg.name)
                run_config(store, run_id, cfg, device, hw, runners, budget_s, out)
                bar.advance(task)
    return out
