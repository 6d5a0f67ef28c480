"""Looking at jobs and ending them: `status`, `list`, `wait`, `result`, `cancel`."""

from __future__ import annotations

from pathlib import Path

import click

from producer.commands.common import (
    broker_option,
    client,
    group_option,
    jobs_or_group,
    json_option,
    print_json,
    progress_printer,
    report_failures,
    say,
)
from shared.errors import TensorqError

STATES = ("queued", "running", "succeeded", "failed", "cancelled")


@click.command()
@click.argument("job_id", metavar="JOB")
@json_option
@broker_option
def status(job_id: str, as_json: bool, broker: str | None) -> None:
    """Show a job's state, worker, device, error and summary."""
    record = client(broker).job(job_id).status()
    if as_json:
        print_json(record.to_status())
    else:
        from producer import render

        render.status(record)


class Since(click.ParamType):
    """`30m`, `2h`, `1d` ago, or an ISO date/time: parsed to epoch seconds."""

    name = "WHEN"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import re
        import time
        from datetime import datetime

        text = str(value).strip()
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text):
            return time.time() - float(m.group(1)) * self.UNITS[m.group(2)]
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            self.fail(f"expected a duration like 30m, 2h, 1d or a date like 2026-11-28 (got {text!r})", param, ctx)


@click.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--kind", type=click.Choice(["op", "train"]), help="Only jobs of this kind.")
@click.option("--since", type=Since(), help="Only jobs submitted since: 30m, 2h, 1d, or a date.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@json_option
@broker_option
def list_jobs(state: str | None, kind: str | None, since: float | None, limit: int, as_json: bool,
              broker: str | None) -> None:
    """List jobs, newest first, with state, worker, device, age, run time and final loss."""
    records = client(broker).jobs(state, limit, kind, since)
    if as_json:
        print_json([r.to_status() for r in records])
    else:
        from producer import render

        render.jobs_table(records)


@click.command()
@click.argument("job_ids", metavar="JOB...", nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(0), help="Give up after this many seconds (exit 1).")
@json_option
@broker_option
def wait(job_ids: tuple[str, ...], timeout: float | None, as_json: bool, broker: str | None) -> None:
    """Wait for jobs to end; exit 0 when all succeeded, 1 otherwise."""
    import time

    c = client(broker)
    jobs = [c.job(j) for j in job_ids]  # unknown ids exit 2 before any waiting
    deadline = None if timeout is None else time.monotonic() + timeout
    finals = []
    for job in jobs:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        record = job.status()
        progress = None
        if len(jobs) == 1 and not as_json and record.kind == "train":
            progress = progress_printer(job.id, record.spec)
        try:
            finals.append(job.wait(timeout=left, on_losses=progress))
        except TimeoutError as e:
            raise TensorqError(str(e)) from None
    if as_json:
        print_json([f.to_status() for f in finals])
    else:
        from producer import render

        for final in finals:
            if final.state == "succeeded":
                render.summary(final)
    report_failures(finals)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE: .npy, .safetensors or .json (a training job's weights: .safetensors).")
@json_option
@broker_option
def result(job_id: str, output: Path | None, as_json: bool, broker: str | None) -> None:
    """Print (or write) an op job's result tensor, or a training job's summary and weights."""
    from producer import render
    from shared import tensors
    from shared.errors import BadInput

    job = client(broker).job(job_id)
    record = job.status()
    if record.kind == "train":
        if output is not None:
            if output.suffix.lower() != ".safetensors":
                raise BadInput("a training job's weights are written as .safetensors")
            if not output.parent.is_dir():
                raise BadInput(f"-o: no such folder: {output.parent}")
            output.write_bytes(job.artifact_bytes("weights"))
            click.echo(f"wrote weights w1, w2 of job {job.id} to {output}", err=True)
            return
        weights = job.weights()
        shapes = {k: list(v.shape) for k, v in weights.items()}
        if as_json:
            print_json({"id": job.id, "summary": record.summary, "weights": shapes})
        else:
            render.summary(record)
            click.echo("weights " + ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in shapes.items()))
        return
    array = job.result_array()
    if output is not None:
        tensors.save_file(array, output)
        click.echo(f"wrote result of job {job.id} to {output}", err=True)
    elif as_json:
        print_json(tensors.to_literal(array))
    else:
        render.tensor(array)


@click.command()
@click.argument("job_ids", metavar="[JOB]...", nargs=-1)
@group_option
@click.option("--wait", "wait_s", type=click.FloatRange(0), default=10, show_default=True,
              help="Seconds to wait for running jobs to stop.")
@json_option
@broker_option
def cancel(job_ids: tuple[str, ...], group_id: str | None, wait_s: float, as_json: bool, broker: str | None) -> None:
    """Cancel jobs: queued ones never start; running ones stop within a second, keeping their history."""
    c = client(broker)
    jobs = [c.job(j) for j in jobs_or_group(c, job_ids, group_id)]  # unknown ids exit 2 before any cancel
    finals = c.cancel(jobs, wait_s)
    if as_json:
        print_json([f.to_status() for f in finals])
        return
    for f in finals:
        if f.state == "cancelled":
            click.echo(f"cancelled {f.id} ({f.error})")
        elif f.state == "running":
            say(f"warning: {f.id} is still running; it will stop at its next iteration")
        else:
            click.echo(f"{f.id} had already ended: {f.state}")
