"""Ranking and rendering a group of jobs."""

from __future__ import annotations

import math
from collections import Counter

from shared.errors import BadInput
from shared.groups import GroupRecord
from shared.metric_names import LOSS, headline, higher_is_better, summarized
from shared.store import JobRecord
from shared.vocab import JobState


def final_loss(r: JobRecord) -> float:
    loss = (r.summary or {}).get("final_loss")
    return loss if isinstance(loss, (int, float)) and not math.isnan(loss) else math.inf


def final(r: JobRecord, metric: str = LOSS) -> float | None:
    """A job's last value of a metric (the loss: its final loss); None when it has no finite one."""
    if metric == LOSS:
        loss = final_loss(r)
        return None if math.isinf(loss) else loss
    value = summarized(r.summary, metric).get("last")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def ranked(jobs: list[JobRecord], by: str = LOSS) -> list[JobRecord]:
    """Succeeded jobs by their last value of `by`, best first (lowest, or highest for an accuracy: the direction
    is shared/metric_names.py KNOWN's), those without a finite one last among them; then the rest (running, queued,
    or stopped early: a cancelled or diverged job's last value is not a result), in submit order."""
    sign = -1.0 if higher_is_better(by) else 1.0

    def order(j: JobRecord) -> tuple[bool, float]:
        done = j.state == JobState.SUCCEEDED
        value = final(j, by) if done else None
        return not done, sign * value if value is not None else (math.inf if done else 0.0)

    return sorted(jobs, key=order)


def counts(jobs: list[JobRecord]) -> dict[str, int]:
    return dict(Counter(j.state for j in jobs))


def check_ranked_by(jobs: list[JobRecord], by: str, group_id: str) -> str:
    """A metric some job of the group records (any group ranks by the loss); else BadInput naming those it has."""
    have = sorted({m for j in jobs for m in j.metrics} | {LOSS})
    if by != LOSS and by not in have:
        raise BadInput(f"--rank-by: no job of group {group_id} records {by!r} (they record: {', '.join(have)})")
    return by


def shown(jobs: list[JobRecord], by: str = LOSS) -> str | None:
    """The metric a group's table shows beside the loss: the one it is ranked by, else the jobs' headline one."""
    if by != LOSS:
        return by
    return next((m for j in jobs if (m := headline(j.summary)) is not None), None)


def render(group: GroupRecord, jobs: list[JobRecord], by: str = LOSS) -> None:
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
    metric = shown(jobs, by)
    extra = [metric.replace("_", "-").upper(), f"BEST {metric.replace('_', '-').upper()}"] if metric else []
    for col in ("FINAL", "BEST", *extra, "RAN", "IT/S"):
        table.add_column(col, justify="right")
    for k, j in enumerate(jobs, start=1):
        s = j.summary or {}
        loss = final_loss(j)
        best = summarized(s, metric).get("best") if metric else None
        told = [number(final(j, metric)), number(best)] if metric else []
        table.add_row(str(k), j.id, f"[{STATE_STYLE.get(j.state, '')}]{j.state}[/]",
                      *(cell(swept_value(j, name)) for name in group.swept),  # an op job has no swept field
                      "-" if math.isinf(loss) else f"{loss:.6g}",
                      f"{s['best_loss']:.6g}" if isinstance(s.get("best_loss"), (int, float)) else "-", *told,
                      duration(s.get("seconds")), f"{s['iterations_per_s']:,.0f}" if s.get("iterations_per_s") else "-")
    c.print(table)
    if by != LOSS:
        c.print(f"ranked by the last {by} ({'highest' if higher_is_better(by) else 'lowest'} first)")


def number(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) else "-"


def swept_value(j: JobRecord, name: str) -> object:
    """A swept field's value: the spec's, or a job function's param of that name."""
    return j.spec[name] if name in j.spec else (j.spec.get("params") or {}).get(name)


def cell(value: object) -> str:
    return "-" if value is None else str(value)
