"""`export`: jobs' metric series written out for other tools (`--tensorboard DIR`: one TensorBoard run each)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from producer.commands.common import broker_option, client, group_option, json_option, print_json, say
from shared import kinds

if TYPE_CHECKING:
    from producer.client import Client
    from producer.tensorboard import Points
    from shared.store import JobRecord

NEEDS_TENSORBOARD = "export --tensorboard needs tensorboard (pip install 'tensorq[tensorboard]')"


@click.command()
@click.argument("job_ids", metavar="[JOB]...", nargs=-1)
@group_option
@click.option("--tensorboard", "tb_dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Write one TensorBoard run per job, DIR/<job id>/ (replacing an earlier export of it).")
@json_option
@broker_option
def export(job_ids: tuple[str, ...], group_id: str | None, tb_dir: Path, as_json: bool, broker: str | None) -> None:
    """Write training jobs' metric series as TensorBoard runs: every series as scalars, the spec as
    hyperparameters (then `tensorboard --logdir DIR`)."""
    from shared.errors import BadInput

    if job_ids and group_id is not None:
        raise click.UsageError("give job ids or --group GROUP, not both")
    if not job_ids and group_id is None:
        raise click.UsageError("give job ids, or --group GROUP")
    try:
        from producer import tensorboard
    except ImportError:
        raise BadInput(NEEDS_TENSORBOARD) from None
    c = client(broker)
    records = _chosen(c, job_ids, group_id)
    written: list[dict[str, Any]] = []
    for record in records:
        run = tensorboard.write_run(tb_dir, record.id, record.spec, _series(c, record), record.state,
                                    record.started_at, record.finished_at)
        written.append({"id": record.id, "path": str(run.path), "series": run.points})
        if not as_json:  # as each is written: a group of long runs takes a while
            click.echo(f"{record.id}: {len(run.points)} series, {run.total:,} points -> {run.path}")
    if as_json:
        print_json({"dir": str(tb_dir), "jobs": written})


def _chosen(c: Client, job_ids: tuple[str, ...], group_id: str | None) -> list[JobRecord]:
    """The jobs to export, each once: named ones must have series (else one line, exit 2, before anything is
    written); a group's that have none are left out, said on stderr."""
    from shared.errors import BadInput

    if group_id is None:
        records = list({r.id: r for r in (c.store.require(j) for j in job_ids)}.values())
        for record in records:
            why = _no_series(c, record)
            if why:
                raise BadInput(f"job {record.id} {why}: nothing to export")
        return records
    kept = []
    for record in c.group(group_id)[1]:
        why = _no_series(c, record)
        if why:
            say(f"note: skipped job {record.id}: it {why}")
        else:
            kept.append(record)
    if not kept:
        raise BadInput(f"group {group_id} has no job with metric series to export")
    return kept


def _no_series(c: Client, record: JobRecord) -> str | None:
    """Why a job has nothing to export (None: it has points)."""
    from shared import series

    if not kinds.has_curves(record.kind):
        return f"is an {record.kind} job, which records no metric series"
    if all(c.store.series.last(record.id, name) is None for name in series.names(record)):
        return f"is {record.state} and has recorded no metric series yet"
    return None


def _series(c: Client, record: JobRecord) -> dict[str, Points]:
    from shared import series

    return {name: c.store.series.read(record.id, name) for name in series.names(record)}
