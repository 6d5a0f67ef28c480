"""Looking at jobs and ending them: `status`, `list`, `wait`, `result`, `cancel`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from producer.commands.common import (
    broker_option,
    client,
    finite,
    group_option,
    jobs_or_group,
    json_option,
    print_json,
    progress_printer,
    report_failures,
    say,
)
from producer.commands.submit import choice
from shared import kinds
from shared.errors import TensorqError
from shared.vocab import JobState, Kind

if TYPE_CHECKING:
    from producer.job import Job
    from shared.store import JobRecord


@click.command()
@click.argument("job_id", metavar="JOB")
@json_option
@broker_option
def status(job_id: str, as_json: bool, broker: str | None) -> None:
    """Show a job's state, worker, device, error and summary."""
    store = client(broker).store
    record = store.require(job_id)  # one round trip (an id prefix resolves here too)
    if as_json:
        print_json(record.to_status())
        return
    from producer import render

    progress = None
    if kinds.has_curves(record.kind) and record.state == JobState.RUNNING:
        from producer.history import latest  # numpy: only for a running job's progress line

        progress = latest(store, record.id)
    render.status(record, progress)


class Since(click.ParamType[float]):
    """`30m`, `2h`, `1d` ago, or an ISO date/time: parsed to epoch seconds."""

    name = "WHEN"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from producer import durations
        from shared.errors import BadInput

        try:
            return durations.since(str(value))
        except BadInput as e:
            self.fail(str(e).removeprefix("since: "), param, ctx)


@click.command("list")
@click.option("--state", type=choice(JobState), help="Only jobs in this state.")
@click.option("--kind", type=choice(Kind), help="Only jobs of this kind.")
@click.option("--since", type=Since(), help="Only jobs submitted since: 30m, 2h, 1d, or a date.")
@click.option("--group", "group_id", metavar="GROUP", help="Only jobs of this sweep or job file.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@json_option
@broker_option
def list_jobs(state: str | None, kind: str | None, since: float | None, group_id: str | None, limit: int,
              as_json: bool, broker: str | None) -> None:
    """List jobs, newest first, with state, worker, device, age, run time and final loss."""
    records = client(broker).jobs(state, limit, kind, since, group=group_id)
    if as_json:
        print_json([r.to_status() for r in records])
    else:
        from producer import render

        render.jobs_table(records)


@click.command()
@click.argument("job_ids", metavar="[JOB]...", nargs=-1)
@group_option
@click.option("--timeout", type=click.FloatRange(0), help="Give up after this many seconds (exit 1).")
@json_option
@broker_option
def wait(job_ids: tuple[str, ...], group_id: str | None, timeout: float | None, as_json: bool,
         broker: str | None) -> None:
    """Wait for jobs (or every job of --group) to end; exit 0 when all succeeded, 1 otherwise."""
    import time

    c = client(broker)
    jobs = [c.job(j) for j in jobs_or_group(c, job_ids, group_id)]  # unknown ids exit 2 before any waiting
    deadline = None if timeout is None else time.monotonic() + timeout
    finals = []
    for job in jobs:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        record = job.status()
        progress = None
        if len(jobs) == 1 and not as_json and kinds.has_curves(record.kind):
            progress = progress_printer(job.id, record.spec)
        try:
            finals.append(job.wait(timeout=left, on_losses=progress))
        except TimeoutError:
            if as_json:  # the scripting contract: the jobs' status objects, as they stand, still on stdout
                print_json([r.to_status() for r in c.store.get_many([j.id for j in jobs]) if r is not None])
            raise TensorqError(f"job {job.id} is still {job.status().state} after {timeout:g} s") from None
    if as_json:
        print_json([f.to_status() for f in finals])
    else:
        from producer import render

        for final in finals:
            if final.state == JobState.SUCCEEDED:
                render.summary(final)
    report_failures(finals)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE: .npy, .safetensors, .json or .pt (a training job's weights: .safetensors or .pt).")
@json_option
@broker_option
def result(job_id: str, output: Path | None, as_json: bool, broker: str | None) -> None:
    """Print (or write) an op job's result tensor, or a training job's summary and weights."""
    job = client(broker).job(job_id)
    record = job.status()
    RESULTS[kinds.of(record.kind).result](job, record, output, as_json)


def tensor_result(job: Job, record: JobRecord, output: Path | None, as_json: bool) -> None:
    """An op job's result tensor: printed, as JSON, or written to a file."""
    from producer import render
    from shared import tensors

    array = job.result_array()
    if output is not None:
        tensors.save_file(array, output)
        click.echo(f"wrote result of job {job.id} to {output}", err=True)
    elif as_json:
        print_json(tensors.to_literal(array), indent=None)
    else:
        render.tensor(array)


def weights_result(job: Job, record: JobRecord, output: Path | None, as_json: bool) -> None:
    """A training job's summary and weights' shapes, or its weights written as .safetensors or .pt."""
    from producer import render
    from shared import tensors
    from shared.errors import BadInput

    if output is not None:
        if output.suffix.lower() not in (".safetensors", ".pt"):
            raise BadInput("a training job's weights are written as .safetensors or .pt")
        if not output.parent.is_dir():
            raise BadInput(f"-o: no such folder: {output.parent}")
        if output.suffix.lower() == ".pt":  # a dict {"w1", "w2"}, for torch.load(..., weights_only=True)
            tensors.save_pt(tensors.load_safetensors(job.artifact_bytes("weights")), output)
        else:
            job.save_artifact("weights", output)  # streamed to the file: never whole in memory
        click.echo(f"wrote weights w1, w2 of job {job.id}{weights_note(record)} to {output}", err=True)
        return
    shapes = job.artifact_shapes("weights")  # its header alone: 1 GiB of weights is not read to print shapes
    if as_json:
        print_json({"id": job.id, "summary": record.summary, "weights": shapes})
    else:
        render.summary(record)
        click.echo("weights " + ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in sorted(shapes.items()))
                   + weights_note(record))


# How `result` shows each kind's result artifact (shared/kinds.py names it).
def summary_result(job: Job, record: JobRecord, output: Path | None, as_json: bool) -> None:
    """A job function's result: the summary it returned (JSON; `-o` writes it to a file)."""
    import json

    from shared.errors import BadInput

    if record.state != JobState.SUCCEEDED:
        why = f" ({record.error})" if record.error else ""
        raise BadInput(f"job {job.id} is {record.state}; it has no result{why}")
    text = json.dumps(finite(record.summary or {}), indent=2, allow_nan=False)
    if output is not None:
        output.write_text(text + "\n")
        click.echo(f"wrote the summary of job {job.id} to {output}", err=True)
    else:
        click.echo(text)


RESULTS: dict[str, Callable[[Job, JobRecord, Path | None, bool], None]] = {
    "result": tensor_result, "weights": weights_result, "summary": summary_result}


def weights_note(record: JobRecord) -> str:
    """Which weights a job that stopped early kept: those of its last iteration."""
    at = (record.summary or {}).get("weights_at")
    return f" ({record.state}: as of iteration {at})" if record.state != JobState.SUCCEEDED and at is not None else ""


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
        if f.state == JobState.CANCELLED:
            click.echo(f"cancelled {f.id} ({f.error})")
        elif f.state == JobState.RUNNING:
            say(f"warning: {f.id} is still running; it will stop at its next iteration")
        else:
            click.echo(f"{f.id} had already ended: {f.state}")
