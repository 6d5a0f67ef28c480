"""Loss curves: in the terminal (plotext) or as a PNG (matplotlib, the optional `tensorq[plot]` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.errors import BadInput

Curves = dict[str, tuple[np.ndarray, np.ndarray]]  # label -> (iterations, losses)
MAX_POINTS = 2_000  # a curve is thinned to about this many points before drawing; the shape survives


def thin(its: np.ndarray, vals: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    if len(its) <= max_points:
        return its, vals
    idx = np.unique(np.r_[np.linspace(0, len(its) - 1, max_points).astype(np.int64), len(its) - 1])
    return its[idx], vals[idx]


def log_scale(curves: Curves) -> bool:
    """Log y when every loss is positive and together they span at least two decades."""
    finite = [v[np.isfinite(v)] for _, v in curves.values()]
    values = np.concatenate(finite) if finite else np.empty(0)
    return bool(values.size) and values.min() > 0 and values.max() / values.min() >= 100


def terminal(curves: Curves, title: str, width: int | None = None, height: int | None = None) -> str:
    import plotext as plt

    plt.clear_figure()
    plt.theme("clear")
    for label, (its, vals) in curves.items():
        its, vals = thin(its, vals, 400)
        plt.plot(its.tolist(), vals.tolist(), label=label, marker="braille")
    if log_scale(curves):
        plt.yscale("log")
        title += " (log scale)"
    plt.title(title)
    plt.xlabel("iteration")
    plt.plotsize(width or 100, height or 25)
    return plt.build()


def png(curves: Curves, path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput("--png needs matplotlib: pip install 'tensorq[plot]'") from None
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for label, (its, vals) in curves.items():
        ax.plot(*thin(its, vals), label=label, linewidth=1.2)
    if log_scale(curves):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
