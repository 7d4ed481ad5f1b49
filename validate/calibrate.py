"""Fit the per-kernel cost coefficients on stored measurements (torch-free).

Per (hardware, kernel): non-negative least squares on *relative* residuals (every row divided
by its measured time, so a 10 µs kernel weighs as much as a 1 s one), made robust by a few
Huber-reweighting rounds. Rows are split into train/test by a hash of their config name, so
every kernel of one config falls on the same side and the split is stable across runs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from attnsim.errors import AttnsimError
from attnsim.hwmodels import Profile
from attnsim.hwmodels.kernelcost import FEATURES, features

from .store import Store
from .suites import Config

TEST_FRACTION = 0.3
HUBER_DELTA = 0.05  # relative residual beyond which a row's weight decays
IRLS_ROUNDS = 10


def split_of(config: str) -> str:
    """'train' or 'test', stable: from the SHA-1 of the config name."""
    h = int(hashlib.sha1(config.encode()).hexdigest()[:8], 16)
    return "test" if (h % 1000) < TEST_FRACTION * 1000 else "train"


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """min ||a x - b|| subject to x >= 0 (Lawson & Hanson 1974, active-set)."""
    n = a.shape[1]
    x, passive = np.zeros(n), np.zeros(n, dtype=bool)
    tol = 1e-12 * max(1.0, np.abs(a).max()) * max(a.shape)
    for _ in range(max_iter):
        w = a.T @ (b - a @ x)
        if passive.all() or w[~passive].max() <= tol:
            break
        passive[np.argmax(np.where(passive, -np.inf, w))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
    return x


def fit(x: np.ndarray, measured_s: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising robust relative error of ``x @ c`` vs measured."""
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    a, b = x / scale / measured_s[:, None], np.ones(len(measured_s))
    weights = np.ones(len(b))
    for _ in range(IRLS_ROUNDS):
        sw = np.sqrt(weights)
        c = nnls(a * sw[:, None], b * sw)
        r = np.abs(a @ c - b)
        weights = np.where(r <= HUBER_DELTA, 1.0, HUBER_DELTA / np.maximum(r, 1e-12))
    return c / scale


def ape(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(predicted - measured) / measured


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties)."""
    if len(a) < 2:
        return float("nan")

    def ranks(v):
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for val in np.unique(v):  # average the ranks of ties
            tie = v == val
            r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class Row:
    id: int
    config: str
    family: str
    kernel: str
    measured_s: float
    features: dict[str, float]
    split: str
    workload: str                    # workload_json: rows with the same one are comparable
    flop_bound: float | None = None  # dense / pattern matmul FLOPs (speedup upper bound)


def load_rows(store: Store, hw: Profile) -> list[Row]:
    from attnsim.counting import count
    from attnsim.patterns import Dense

    out = []
    latest = {(r["config"], r["kernel"]): r for r in store.rows("WHERE hw_profile = ?", (hw.name,))}
    for r in latest.values():  # a re-measured (config, kernel), e.g. with a larger --budget, supersedes
        spec = json.loads(r["pattern_json"])
        wl, pattern = Config(r["config"], r["family"], spec["workload"], spec["pattern"]).build()
        pc = count(wl, pattern).flops.matmul
        bound = count(wl, Dense()).flops.matmul / pc if pc else None
        out.append(Row(r["id"], r["config"], r["family"], r["kernel"], r["median_s"],
                       features(wl, pattern, r["kernel"], hw), split_of(r["config"]), r["workload_json"], bound))
    if not out:
        raise AttnsimError(f"no measurements for --hw {hw.name} in the database: run attnsim validate run first")
    return out


def _matrix(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([[r.features[f] for f in FEATURES] for r in rows]),
            np.array([r.measured_s for r in rows]))


def _errors(rows: list[Row], coeffs: np.ndarray) -> dict:
    if not rows:
        return {"n": 0}
    x, y = _matrix(rows)
    e = ape(x @ coeffs, y)
    return {"n": len(rows), "mape": float(e.mean()), "max_err": float(e.max())}


def fit_group(kernel: str) -> str:
    """Kernels fitted together. The naive multi-op runners are compositions of the same torch
    ops on the same machine, so one set of per-FLOP, per-byte and per-op costs serves them all;
    fitted apart, 10 coefficients on 11-14 rows each overfit (held-out 19.6 % vs 12.3 %)."""
    return "naive" if kernel.startswith("naive-") else kernel


def calibrate(store: Store, hw: Profile) -> tuple[dict[str, dict], dict]:
    """(kernel -> {coefficients, train, test}, fitted_on) for every kernel measured on ``hw``."""
    rows = load_rows(store, hw)
    kernels = {}
    for group in sorted({fit_group(r.kernel) for r in rows}):
        members = sorted({r.kernel for r in rows if fit_group(r.kernel) == group})
        train = [r for r in rows if r.kernel in members and r.split == "train"]
        if len(train) < len(FEATURES):
            continue  # too few points to fit: the kernels keep their uncalibrated model
        coeffs = fit(*_matrix(train))
        for kernel in members:
            mine = [r for r in rows if r.kernel == kernel]
            kernels[kernel] = {"coefficients": {f: float(c) for f, c in zip(FEATURES, coeffs)},
                               "train": _errors([r for r in mine if r.split == "train"], coeffs),
                               "test": _errors([r for r in mine if r.split == "test"], coeffs)}
            if len(members) > 1:
                kernels[kernel]["fitted_with"] = members
    if not kernels:
        raise AttnsimError(f"too few measurements to fit any kernel on {hw.name} (need >= {len(FEATURES)} "
                           "train rows per kernel): run a larger suite")
    runs = store.runs()
    fitted_on = {"db": str(store.path), "rows": len(rows),
                 "runs": [{"id": r["id"], "suite": r["suite"], "device": r["device"],
                           "cpu_model": r["env"].get("cpu_model"), "gpu": r["env"].get("gpu"),
                           "torch": r["env"].get("torch"), "threads": r["env"].get("torch_threads")} for r in runs],
                 "split": f"sha1(config) -> test with probability {TEST_FRACTION}",
                 "method": "non-negative least squares on relative residuals, Huber-reweighted"}
    return kernels, fitted_on
