"""Comparing jobs side by side: how each ended, and which spec fields set them apart."""

from __future__ import annotations

from typing import Any

from shared.store import JobRecord

ENDING_FIELDS = ("final_loss", "best_loss", "iterations", "seconds", "iterations_per_s", "device")
HEADERS = {"final_loss": "FINAL", "best_loss": "BEST", "iterations": "ITERS", "seconds": "SECONDS",
           "iterations_per_s": "IT/S"}


def table(records: list[JobRecord]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per job (id, state, how it ended, and the spec fields that differ between the jobs)."""
    fields = sorted({k for r in records for k in r.spec} - {"kind"})
    differing = [f for f in fields if len({repr(r.spec.get(f)) for r in records}) > 1]
    rows = []
    for r in records:
        summary = r.summary or {}
        rows.append({"id": r.id, "state": r.state, **{k: summary.get(k) for k in ENDING_FIELDS},
                     **{f: r.spec.get(f) for f in differing}})
    return rows, differing


def render_table(rows: list[dict[str, Any]], differing: list[str]) -> None:
    from rich.table import Table

    from producer.render import console

    t = Table(box=None, header_style="bold")
    columns = ["id", "state", *ENDING_FIELDS, *differing]
    for col in columns:
        t.add_column(HEADERS.get(col, col.replace("_", "-").upper()), no_wrap=col in ("id", "state"))
    for row in rows:
        t.add_row(*(_cell(row.get(c)) for c in columns))
    console().print(t)
    if not differing and len(rows) > 1:
        console().print("the specs are identical")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
