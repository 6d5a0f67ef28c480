"""Comparing training jobs side by side: how each ended (or, running, where it stands), and which spec fields
set them apart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.metric_names import LOSS, headline, summarized
from shared.store import JobRecord

ENDING_FIELDS = ("final_loss", "best_loss", "iterations", "seconds", "iterations_per_s", "device")
HEADERS = {"final_loss": "FINAL", "best_loss": "BEST", "iterations": "ITERS", "seconds": "SECONDS",
           "iterations_per_s": "IT/S", "device": "DEVICE"}
# When a spec field that differs has an ending field's name (`iterations`: planned vs run), the JSON row keeps
# the spec's value under the name (as `differing_fields` promises) and the ending's under this one.
RENAMED_ENDING = {"iterations": "iterations_done"}
Progress = tuple[int, float]  # (iterations done, latest loss) of a running job


def table(records: list[JobRecord], progress: Mapping[str, Progress] | None = None, metric: str = LOSS,
          last: Mapping[str, float] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per training job (id, state, how it ended, and the spec fields that differ between the jobs).
    A running job's row shows its progress: iterations done and latest loss (as FINAL). Compared on another
    metric than the loss, each row also has `last_<metric>`: its latest value, from `last` (None without one)."""
    held_out = headline_of(records)
    fields = sorted({k for r in records for k in r.spec} - {"kind"})
    differing = [f for f in fields if len({repr(r.spec.get(f)) for r in records}) > 1]
    rows = []
    for r in records:
        ending = {k: (r.summary or {}).get(k) for k in ENDING_FIELDS}
        if r.summary is None and progress and r.id in progress:
            ending["iterations"], ending["final_loss"] = progress[r.id]
            ending["device"] = r.device
        ending = {RENAMED_ENDING.get(k, k) if k in differing else k: v for k, v in ending.items()}
        if metric != LOSS:
            ending[last_key(metric)] = (last or {}).get(r.id)
        elif held_out is not None:  # compared on the loss, the held-out metric shows beside it
            ending[held_out] = summarized(r.summary, held_out).get("last")
        rows.append({"id": r.id, "state": r.state, **ending, **{f: r.spec.get(f) for f in differing}})
    return rows, differing


def headline_of(records: list[JobRecord]) -> str | None:
    return next((m for r in records if (m := headline(r.summary)) is not None), None)


def last_key(metric: str) -> str:
    return f"last_{metric}"


def render_table(rows: list[dict[str, Any]], differing: list[str], metric: str = LOSS,
                 held_out: str | None = None) -> None:
    from rich.table import Table

    from producer.render import console

    t = Table(box=None, header_style="bold")
    ending = [RENAMED_ENDING.get(k, k) if k in differing else k for k in ENDING_FIELDS]
    heads = [header(k) for k in ending]
    if metric != LOSS:
        ending.append(last_key(metric))
        heads.append(f"LAST {metric.replace('_', '-').upper()}")
    elif held_out is not None:
        ending.append(held_out)
        heads.append(held_out.replace("_", "-").upper())
    columns = ["id", "state", *ending, *differing]
    headers = ["ID", "STATE", *heads, *(f.replace("_", "-").upper() for f in differing)]
    for col, head in zip(columns, headers, strict=True):
        t.add_column(head, no_wrap=col in ("id", "state"))
    for row in rows:
        t.add_row(*(_cell(row.get(c)) for c in columns))
    console().print(t)
    if not differing and len(rows) > 1:
        console().print("the specs are identical")


def header(ending_field: str) -> str:
    if ending_field in RENAMED_ENDING.values():
        return "DONE"  # beside the spec's ITERATIONS column: iterations run, not planned
    return HEADERS[ending_field]


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict) and "sha256" in v:  # a dataset: its name says more than its reference
        return str(v.get("name"))
    return f"{v:.4g}" if isinstance(v, float) else str(v)
