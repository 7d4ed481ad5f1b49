"""PNG plots of a sweep: a heatmap of ``value`` over (x, y), or one line per ``series`` value.
Axes not plotted are reduced by taking the best value over them (max, or min for times), and
the title says so: a heatmap cell is the best the other swept parameters can do."""
from __future__ import annotations

import numpy as np

from .errors import AttnsimError
from .sweep_spec import SweepSpec


def _reduce(spec: SweepSpec, cols: dict, keys: list[str]) -> tuple[list[tuple], np.ndarray]:
    """(value combos of ``keys`` in spec order, best value per combo) over valid rows."""
    value = np.asarray(cols[spec.plot.value], dtype=float)
    value = np.where(cols["error"] == "", value, np.nan)
    lowest = spec.plot.value.endswith("_s")
    shape = [len(spec.axes[k]) for k in keys]
    out = np.full(shape, np.nan)
    idx = tuple(np.array([spec.axes[k].index(v) for v in cols[k].tolist()]) for k in keys)
    flat = np.ravel_multi_index(idx, shape)
    for cell in np.unique(flat):
        vals = value[flat == cell]
        vals = vals[~np.isnan(vals)]
        if len(vals):
            out.flat[cell] = vals.min() if lowest else vals.max()
    return [spec.axes[k] for k in keys], out


def plot(spec: SweepSpec, cols: dict, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AttnsimError("--plot needs matplotlib: pip install matplotlib") from None
    p = spec.plot
    if p.value not in cols:
        raise AttnsimError(f"plot.value {p.value!r} is not a result column: use one of "
                           f"{', '.join(k for k in cols if k not in spec.axes)}")
    others = [k for k, v in spec.axes.items() if len(v) > 1 and k not in (p.x, p.y, p.series)]
    how = "min" if p.value.endswith("_s") else "max"
    note = f" ({how} over {', '.join(others)})" if others else ""
    fig, ax = plt.subplots(figsize=(7, 5))
    if p.y:
        (xs, ys), grid = _reduce(spec, cols, [p.x, p.y])
        image = ax.imshow(grid.T, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=60, fontsize=7)
        ax.set_yticks(range(len(ys)), [str(v) for v in ys], fontsize=7)
        ax.set_ylabel(p.y)
        fig.colorbar(image, ax=ax, label=p.value)
    else:
        keys = [p.x] + ([p.series] if p.series else [])
        axes_values, grid = _reduce(spec, cols, keys)
        xs = axes_values[0]
        numeric = all(isinstance(v, (int, float)) for v in xs)
        xpos = xs if numeric else range(len(xs))
        lines = grid.reshape(len(xs), -1).T
        labels = axes_values[1] if p.series else [p.value]
        for label, line in zip(labels, lines):
            ax.plot(xpos, line, marker="o", label=f"{p.series}={label}" if p.series else str(label))
        if numeric and min(xs) > 0 and max(xs) / min(xs) > 50:
            ax.set_xscale("log", base=2)
        if not numeric:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_ylabel(p.value)
        ax.legend(fontsize=7)
    ax.set_xlabel(p.x)
    ax.set_title(f"{spec.name}: {p.value}{note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
