"""Curves of a metric (the loss, or another series): in the terminal (plotext) or as a PNG (matplotlib, the
optional `tensorq[plot]` extra)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from shared.errors import BadInput

Curves = dict[str, tuple[np.ndarray, np.ndarray]]  # label -> (iterations, values)
MAX_POINTS = 2_000  # a curve is thinned to about this many points before drawing; the shape survives


def thin(its: np.ndarray, vals: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    if len(its) <= max_points:
        return its, vals
    idx = np.unique(np.r_[np.linspace(0, len(its) - 1, max_points).astype(np.int64), len(its) - 1])
    return its[idx], vals[idx]


def log_scale(curves: Curves) -> bool:
    """Log y when every value is positive and together they span at least two decades."""
    finite = [v[np.isfinite(v)] for _, v in curves.values()]
    values = np.concatenate(finite) if finite else np.empty(0)
    return bool(values.size) and values.min() > 0 and values.max() / values.min() >= 100


def finite_points(curves: Curves) -> tuple[Curves, bool]:
    """The curves without their inf/nan points (a diverged run's), and whether any were left out."""
    kept: Curves = {}
    dropped = False
    for label, (its, vals) in curves.items():
        ok = np.isfinite(vals)
        dropped = dropped or not ok.all()
        if ok.any():
            kept[label] = (its[ok], vals[ok])
    return kept, dropped


# Off a terminal colours are gone, so each curve gets its own glyph too (the first keeps braille's resolution).
MARKERS = ("braille", "x", "•", "+", "o", "*", "#", "@", "%", "&", "$", "~")


def y_ticks(curves: Curves, log: bool) -> tuple[list[float], list[str]]:
    """Tick values and labels that stay readable: powers of ten on a log axis (plotext's own labels print
    the lowest decades as 0.0000), a few 3-significant-digit values on a linear one."""
    values = np.concatenate([v for _, v in curves.values()])
    lo, hi = float(values.min()), float(values.max())
    if log:
        first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        step = max(1, math.ceil((last - first) / 6))
        powers = range(first, last + 1, step)
        return [10.0 ** k for k in powers], ["1" if k == 0 else f"1e{k}" for k in powers]
    ticks = np.linspace(lo, hi, 5).tolist() if hi > lo else [lo]
    return ticks, [f"{t:.3g}" for t in ticks]


def terminal(curves: Curves, title: str, width: int | None = None, height: int | None = None,
             metric: str = "loss") -> str:
    import plotext as plt

    curves, dropped = finite_points(curves)
    if not curves:
        return f"{title}: no finite {metric} to draw"
    log = log_scale(curves)
    title += (" (log scale)" if log else "") + (f"; inf/nan {_plural(metric)} not drawn" if dropped else "")
    plt.clear_figure()
    plt.theme("clear")
    for k, (label, (its, vals)) in enumerate(curves.items()):
        its, vals = thin(its, vals, 400)
        plt.plot(its.tolist(), vals.tolist(), label=label, marker=MARKERS[k % len(MARKERS)])
    if log:
        plt.yscale("log")
    plt.yticks(*y_ticks(curves, log))
    plt.title(title)
    plt.xlabel("iteration")
    plt.plotsize(width or 100, height or 25)
    return str(plt.build())


def _plural(metric: str) -> str:
    return "losses" if metric == "loss" else f"{metric} values"


def png(curves: Curves, path: Path, title: str, metric: str = "loss") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput("--png needs matplotlib: pip install 'tensorq[plot]'") from None
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    drawn, dropped = finite_points(curves)
    for label, (its, vals) in curves.items():  # an inf or nan is a gap in its curve
        its, vals = thin(its, vals)
        ax.plot(its, np.where(np.isfinite(vals), vals, np.nan), label=label, linewidth=1.2)
    if dropped:
        title += f" (inf/nan {_plural(metric)} not drawn)"
    if log_scale(drawn):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
