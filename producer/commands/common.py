"""Options and helpers every command shares."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

import click

EXIT_JOB_FAILED = 1

broker_option = click.option("--broker", metavar="URL", default=None,
                             help="Redis URL. Default: $TENSORQ_BROKER_URL, then the `tensorq up` record, "
                                  "then redis://127.0.0.1:6379/0.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
group_option = click.option("--group", "group_id", metavar="GROUP", help="Every job of a sweep or job file.")


def client(broker: str | None):
    from producer.client import Client

    return Client(broker)


def jobs_or_group(c, job_ids: tuple[str, ...], group_id: str | None) -> list[str]:
    """The job ids a command acts on: those given, plus every job of --group; at least one."""
    ids = list(job_ids)
    if group_id is not None:
        record, _ = c.group(group_id)
        ids += record.job_ids
    if not ids:
        raise click.UsageError("give job ids, or --group GROUP")
    return list(dict.fromkeys(ids))


def print_json(obj: Any) -> None:
    """Strict JSON: a non-finite number (a diverged loss, a division by zero) is written as null."""
    click.echo(json.dumps(finite(obj), indent=2, default=str, allow_nan=False))


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


def report_failures(finals: list) -> None:
    """One line per job that did not succeed; exit 1 if there was one."""
    failed = [f for f in finals if f.state != "succeeded"]
    for f in failed:
        say(f"error: job {f.id} {f.state}: {f.error or 'no reason recorded'}")
    if failed:
        sys.exit(EXIT_JOB_FAILED)


def progress_printer(job_id: str, spec: dict[str, Any]):
    """A loss callback printing a line about every tenth of the run (or every 2 s): the plain, pipe-friendly
    progress of `--wait` and `wait` (`--watch` and `watch` draw bars instead)."""
    from producer import render

    total = int(spec.get("iterations") or 0)
    step = max(1, total // 10)
    state = {"next": step, "at": time.monotonic()}

    def on_losses(first: int, values) -> None:
        done = first + len(values)
        if done >= state["next"] or time.monotonic() - state["at"] > 2 or done == total:
            click.echo(render.progress_line(job_id, done, total, float(values[-1])))
            state["next"] = (done // step + 1) * step
            state["at"] = time.monotonic()

    return on_losses
