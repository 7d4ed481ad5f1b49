"""Model versus measurement: held-out error per (family, kernel), rank correlations, and
measured speedups above attnsim's upper bound (torch-free; plots need matplotlib)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from attnsim.errors import AttnsimError
from attnsim.hwmodels import Profile
from attnsim.hwmodels.calibration import load_overlay
from attnsim.hwmodels.kernelcost import default_coefficients, kernel_time_s

from .calibrate import Row, ape, load_rows, spearman
from .store import Store
from .suites import suite

BOUND_TOLERANCE = 1.05  # timing noise allowed before a measured speedup counts as a violation


def _coefficients(hw: Profile, overlay, kernel: str, dtype: str) -> tuple[dict, str]:
    if overlay is not None and kernel in overlay.kernels:
        return overlay.kernels[kernel], "calibrated"
    return default_coefficients(hw, dtype), "uncalibrated"


def predictions(rows: list[Row], hw: Profile, dtype: str = "fp32") -> tuple[np.ndarray, list[str]]:
    overlay = load_overlay(hw)
    out, sources = [], []
    for r in rows:
        coeffs, source = _coefficients(hw, overlay, r.kernel, dtype)
        out.append(kernel_time_s(r.features, coeffs))
        sources.append(source)
    return np.array(out), sources


def _metrics(pred: np.ndarray, meas: np.ndarray) -> dict:
    e = ape(pred, meas)
    return {"n": len(meas), "mape": float(e.mean()), "max_err": float(e.max()),
            "spearman": spearman(pred, meas)}


def speedup_checks(rows: list[Row], pred: np.ndarray) -> list[dict]:
    """Per non-dense row with a dense measurement of the same workload: measured and predicted
    speedup versus the fastest dense kernel, and the FLOP upper bound."""
    dense = defaultdict(list)
    for i, r in enumerate(rows):
        if r.family == "dense":
            dense[r.workload].append(i)
    out = []
    for i, r in enumerate(rows):
        if r.family == "dense" or r.workload not in dense:
            continue
        best = min(dense[r.workload], key=lambda j: rows[j].measured_s)
        measured = rows[best].measured_s / r.measured_s
        out.append({"config": r.config, "kernel": r.kernel, "baseline_kernel": rows[best].kernel,
                    "measured": measured, "predicted": float(pred[best] / pred[i]), "flop_bound": r.flop_bound,
                    "violates_bound": bool(r.flop_bound and measured > r.flop_bound * BOUND_TOLERANCE)})
    return out


def compare(store: Store, hw: Profile, split: str = "test", suite_name: str | None = None) -> dict:
    """``suite_name``: only the configurations of that suite (its targets are stated per suite)."""
    rows = load_rows(store, hw)
    if suite_name is not None:
        names = {c.name for c in suite(suite_name)}
        rows = [r for r in rows if r.config in names]
        if not rows:
            raise AttnsimError(f"--suite {suite_name}: no measurement of that suite for {hw.name} in the database")
    pred, sources = predictions(rows, hw)
    meas = np.array([r.measured_s for r in rows])
    held = np.array([split == "all" or r.split == split for r in rows])
    groups = defaultdict(list)
    for i, r in enumerate(rows):
        if held[i]:
            groups[(r.family, r.kernel)].append(i)
    per_group = [{"family": f, "kernel": k, "model": sources[idx[0]], **_metrics(pred[idx], meas[idx])}
                 for (f, k), idx in sorted(groups.items())]
    families = defaultdict(list)
    for (f, _), idx in groups.items():
        families[f] += idx
    per_family = [{"family": f, **_metrics(pred[idx], meas[idx])} for f, idx in sorted(families.items())]
    idx = np.flatnonzero(held)
    checks = speedup_checks(rows, pred)
    held_checks = [c for c in checks if split == "all" or c["config"] in {rows[i].config for i in idx}]
    sp = held_checks
    return {
        "hw": hw.name, "split": split,
        "overall": _metrics(pred[idx], meas[idx]) if len(idx) else {"n": 0},
        "by_family_kernel": per_group,
        "by_family": per_family,  # every kernel of a family together (the validation targets are per family)
        "speedup_spearman": spearman(np.array([c["predicted"] for c in sp]), np.array([c["measured"] for c in sp]))
        if len(sp) > 1 else float("nan"),
        "bound_violations": [c for c in held_checks if c["violates_bound"]],
        "speedups": held_checks,
        "_points": [{"config": rows[i].config, "family": rows[i].family, "kernel": rows[i].kernel,
                     "measured_s": float(meas[i]), "predicted_s": float(pred[i]),
                     "matmul_flops": rows[i].features["matmul_flops"], "bytes": rows[i].features["bytes"]}
                    for i in idx],
    }


def plots(report: dict, hw: Profile, out_dir: str | Path) -> list[Path]:
    """predicted-vs-measured (log-log, y = x), speedup predicted-vs-measured, roofline with points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pts, written = report["_points"], []

    fig, ax = plt.subplots(figsize=(5, 5))
    for kernel in sorted({p["kernel"] for p in pts}):
        sel = [p for p in pts if p["kernel"] == kernel]
        ax.scatter([p["measured_s"] for p in sel], [p["predicted_s"] for p in sel], s=12, label=kernel)
    lo = min(min(p["measured_s"], p["predicted_s"]) for p in pts)
    hi = max(max(p["measured_s"], p["predicted_s"]) for p in pts)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="measured s", ylabel="predicted s",
           title=f"{hw.name}: {report['split']} split, MAPE {report['overall']['mape']:.1%}")
    ax.legend(fontsize=7)
    written.append(_save(fig, out_dir / "predicted_vs_measured.png"))

    sp = report["speedups"]
    if sp:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter([c["measured"] for c in sp], [c["predicted"] for c in sp], s=12)
        ax.scatter([c["measured"] for c in sp], [c["flop_bound"] for c in sp], s=8, marker="_", label="FLOP bound")
        top = max(max(c["measured"], c["predicted"], c["flop_bound"] or 0) for c in sp)
        ax.plot([0, top], [0, top], "k--", lw=1)
        ax.set(xlabel="measured speedup vs dense", ylabel="predicted speedup", title="speedups")
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "speedup_predicted_vs_measured.png"))

    # features are per thread: compare with the per-thread roofs
    units = hw.get("compute_units") if hw.kind == "cpu" else 1
    peak, bw = hw.matmul_peak("fp32") / units, hw.get("memory_bw_bytes_per_s") / units
    fig, ax = plt.subplots(figsize=(6, 4))
    intensity = np.logspace(-1, 4, 100)
    ax.plot(intensity, np.minimum(peak, intensity * bw), "k-", lw=1, label="roofline (profile)")
    ax.scatter([p["matmul_flops"] / p["bytes"] for p in pts], [p["matmul_flops"] / p["measured_s"] for p in pts],
               s=10, label="measured")
    ax.set(xscale="log", yscale="log", xlabel="FLOP / byte", ylabel="matmul FLOP/s per thread", title=f"{hw.name} roofline")
    ax.legend(fontsize=7)
    written.append(_save(fig, out_dir / "roofline.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def public(report: dict) -> dict:
    """The report without private plotting points (for --json)."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


