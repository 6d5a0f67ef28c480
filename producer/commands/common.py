"""Options and helpers every command shares."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from shared.vocab import JobState

if TYPE_CHECKING:  # never at run time: `tensorq --help` stays free of redis and numpy
    import numpy as np

    from producer.client import Client
    from producer.job import LossCallback
    from shared.store import JobRecord

EXIT_JOB_FAILED = 1

broker_option = click.option("--broker", metavar="URL", default=None,
                             help="Redis URL. Default: $TENSORQ_BROKER_URL, then the `tensorq up` record, "
                                  "then redis://127.0.0.1:6379/0.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
group_option = click.option("--group", "group_id", metavar="GROUP", help="Every job of a sweep or job file.")


def client(broker: str | None) -> Client:
    from producer.client import Client

    return Client(broker)


def jobs_or_group(c: Client, job_ids: tuple[str, ...], group_id: str | None) -> list[str]:
    """The job ids a command acts on: those given, plus every job of --group; at least one."""
    ids = list(job_ids)
    if group_id is not None:
        record, _ = c.group(group_id)
        ids += record.job_ids
    if not ids:
        raise click.UsageError("give job ids, or --group GROUP")
    return list(dict.fromkeys(ids))


def print_json(obj: Any, indent: int | None = 2) -> None:
    """Strict JSON: a non-finite number (a diverged loss, a division by zero) is written as null. A tensor's
    data goes on one line (`indent=None`): indented, a 2048x2048 result took 108 MB, one number per line."""
    click.echo(json.dumps(finite(obj), indent=indent, default=str, allow_nan=False))


def finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def say(message: str) -> None:
    click.echo(message, err=True)


def report_failures(finals: list[JobRecord]) -> None:
    """One line per job that did not succeed; exit 1 if there was one."""
    failed = [f for f in finals if f.state != JobState.SUCCEEDED]
    for f in failed:
        say(f"error: job {f.id} {f.state}: {f.error or 'no reason recorded'}")
    if failed:
        sys.exit(EXIT_JOB_FAILED)


PROGRESS_QUIET_S = 30.0  # a run slower than a tenth per this long still prints a line this often


def progress_printer(job_id: str, spec: dict[str, Any]) -> LossCallback:
    """A loss callback printing a line at each tenth of the run (iterations N/10, 2N/10, ..., N, with that
    iteration's loss, whatever the batches' sizes), and one every PROGRESS_QUIET_S when a tenth takes
    longer: the plain, pipe-friendly progress of `--wait` and `wait` (`--watch` and `watch` draw bars).
    A resumed job's history is re-read from its checkpoint: marks already printed are not printed again."""
    import numpy as np

    from producer import render

    total = int(spec.get("iterations") or 0)
    marks = sorted({round(total * k / 10) for k in range(1, 11)} - {0})  # iterations done, 1-based
    next_mark = printed = 0  # the next mark's index in marks; the last iteration printed
    printed_at = time.monotonic()

    def on_losses(first: int, values: np.ndarray) -> None:
        nonlocal next_mark, printed, printed_at
        done = first + len(values)
        while next_mark < len(marks) and marks[next_mark] <= done:
            mark = marks[next_mark]
            next_mark += 1
            if mark > first and mark > printed:  # a mark this batch holds (not one re-read)
                click.echo(render.progress_line(job_id, mark, total, float(values[mark - first - 1])))
                printed, printed_at = mark, time.monotonic()
        if done > printed and time.monotonic() - printed_at > PROGRESS_QUIET_S and len(values):
            click.echo(render.progress_line(job_id, done, total, float(np.asarray(values)[-1])))
            printed, printed_at = done, time.monotonic()

    return on_losses
