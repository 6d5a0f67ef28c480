"""Ranking and rendering a group of jobs."""

from __future__ import annotations

import math
from collections import Counter

from shared.groups import GroupRecord
from shared.store import JobRecord
from shared.vocab import JobState


def final_loss(r: JobRecord) -> float:
    loss = (r.summary or {}).get("final_loss")
    return loss if isinstance(loss, (int, float)) and not math.isnan(loss) else math.inf


def ranked(jobs: list[JobRecord]) -> list[JobRecord]:
    """Succeeded jobs by final loss, best first (a non-finite one last among them); then the rest (running,
    queued, or stopped early: a cancelled or diverged job's last loss is not a result), in submit order."""
    def order(j: JobRecord) -> tuple[bool, float]:
        done = j.state == JobState.SUCCEEDED
        return not done, final_loss(j) if done else 0.0

    return sorted(jobs, key=order)


def counts(jobs: list[JobRecord]) -> dict[str, int]:
    return dict(Counter(j.state for j in jobs))


def render(group: GroupRecord, jobs: list[JobRecord]) -> None:
    from rich.table import Table

    from producer.render import STATE_STYLE, console, duration

    c = console()
    done = ", ".join(f"{n} {state}" for state, n in sorted(counts(jobs).items()))
    c.print(f"group {group.id}: {group.size} jobs from {group.source}: {done}")
    table = Table(box=None, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    for name in group.swept:
        table.add_column(name.replace("_", "-").upper(), justify="right")
    for col in ("FINAL", "BEST", "RAN", "IT/S"):
        table.add_column(col, justify="right")
    for k, j in enumerate(jobs, start=1):
        s = j.summary or {}
        loss = final_loss(j)
        table.add_row(str(k), j.id, f"[{STATE_STYLE.get(j.state, '')}]{j.state}[/]",
                      *(cell(j.spec.get(name)) for name in group.swept),  # an op job has no swept field
                      "-" if math.isinf(loss) else f"{loss:.6g}",
                      f"{s['best_loss']:.6g}" if isinstance(s.get("best_loss"), (int, float)) else "-",
                      duration(s.get("seconds")), f"{s['iterations_per_s']:,.0f}" if s.get("iterations_per_s") else "-")
    c.print(table)


def cell(value: object) -> str:
    return "-" if value is None else str(value)
