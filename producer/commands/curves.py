"""Curves of a job's metric series (the loss, or another it records): `history`, `compare`, `watch`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from producer.commands.common import (
    broker_option,
    client,
    group_option,
    jobs_or_group,
    json_option,
    print_json,
    report_failures,
    say,
)
from shared import kinds
from shared.metric_names import LOSS
from shared.vocab import JobState

if TYPE_CHECKING:
    from producer.plots import Curves


def check_metric(ctx: click.Context, param: click.Parameter, name: str) -> str:
    """A metric's name must be one a series can have: said before anything is read."""
    from shared.errors import BadInput
    from shared.series import check_name

    try:
        return check_name(name)
    except BadInput as e:
        raise click.BadParameter(str(e)) from None


metric_option = click.option("--metric", default=LOSS, show_default=True, metavar="NAME", callback=check_metric,
                             help="The series to read: the loss, or another metric the job records.")


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--every", type=click.IntRange(1), default=1, help="Only iterations divisible by N.")
@click.option("--tail", type=click.IntRange(1), help="Only the last N (after --range and --every).")
@click.option("--range", "range_text", metavar="A:B", help="Only iterations A to B-1 (either end may be left out).")
@click.option("--plot", is_flag=True, help="Draw the curve in the terminal instead of printing rows.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Write the curve to a PNG file.")
@metric_option
@broker_option
def history(job_id: str, fmt: str, every: int, tail: int | None, range_text: str | None, plot: bool,
            png: Path | None, metric: str, broker: str | None) -> None:
    """Print a training job's loss history (or another metric's; every iteration, or a slice); or plot it."""
    from producer import history as hist
    from producer import render
    from shared import series
    from shared.errors import BadInput

    cut = hist.Slice.parse(range_text, every, tail)
    check_png(png)
    job = client(broker).job(job_id)
    record = job.status()
    if not kinds.has_curves(record.kind):
        raise BadInput(f"job {job.id} is an {record.kind} job; only training jobs have a loss history "
                       "(try tensorq result)")
    series.require(record, metric)
    store = job.client.store
    if plot or png:
        curves = {job.id: hist.as_arrays(store, job.id, cut, metric)}
        _draw(curves, f"{metric} of {job.id}", plot, png, metric)
        return
    render.history(hist.rows(store, job.id, cut, metric), fmt, job.id, every, metric=metric)


@click.command()
@click.argument("job_ids", metavar="[JOB]...", nargs=-1)
@group_option
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Write the overlaid curves to a PNG.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Draw the curves in the terminal.")
@metric_option
@json_option
@broker_option
def compare(job_ids: tuple[str, ...], group_id: str | None, png: Path | None, plot: bool, metric: str,
            as_json: bool, broker: str | None) -> None:
    """Overlay training jobs' loss curves (or another metric's) and tabulate how they ended and how their
    specs differ."""
    from producer import compare as cmp
    from producer import history as hist
    from shared import series
    from shared.errors import BadInput

    check_png(png)
    c = client(broker)
    named = list({r.id: r for r in (c.job(j).status() for j in job_ids)}.values())  # each job once
    flat = [r for r in named if not kinds.has_curves(r.kind)]
    if flat:
        raise BadInput(f"job {flat[0].id} is an {flat[0].kind} job; compare takes training jobs (tensorq status "
                       f"shows an {flat[0].kind})")
    given = {r.id for r in named}
    records = named + [r for r in c.group(group_id)[1] if r.id not in given] if group_id else named
    if not records:
        raise click.UsageError("give job ids, or --group GROUP")
    skipped = sum(not kinds.has_curves(r.kind) for r in records)
    records = [r for r in records if kinds.has_curves(r.kind)]
    if skipped:
        say(f"note: left out {skipped} op job{'s' if skipped > 1 else ''} of the group: compare takes training jobs")
    if not records:
        raise BadInput(f"group {group_id} has no training jobs to compare")
    for r in records:
        series.require(r, metric)
    progress = {r.id: p for r in records if not r.finished and (p := hist.latest(c.store, r.id)) is not None}
    last = {} if metric == LOSS else {r.id: p[1] for r in records if (p := hist.latest(c.store, r.id, metric))}
    rows, differing = cmp.table(records, progress, metric, last)
    if as_json:
        print_json({"jobs": rows, "differing_fields": differing})
    else:
        cmp.render_table(rows, differing, metric, cmp.headline_of(records))
    if png or (plot and not as_json):
        curves = {r.id: hist.as_arrays(c.store, r.id, metric=metric) for r in records}
        _draw(curves, metric, plot and not as_json, png, metric)


@click.command()
@click.argument("job_ids", metavar="[JOB]...", nargs=-1)
@group_option
@broker_option
def watch(job_ids: tuple[str, ...], group_id: str | None, broker: str | None) -> None:
    """Live progress bars (iteration, it/s, ETA, loss, the latest of each other metric) until the jobs end;
    Ctrl-C leaves them running."""
    from producer import render
    from producer.watch import watch as watch_jobs

    c = client(broker)
    ids = [c.job(j).id for j in jobs_or_group(c, job_ids, group_id)]  # unknown ids exit 2 before drawing
    try:
        finals = watch_jobs(c.store, ids, render.console())
    except KeyboardInterrupt:
        say("stopped watching; the jobs keep running")
        raise SystemExit(130) from None
    for final in finals:
        if final.state == JobState.SUCCEEDED:
            render.summary(final)
    report_failures(finals)


def check_png(png: Path | None) -> None:
    """--png's folder must exist: said in one line before anything is read (as `result -o` does)."""
    from shared.errors import BadInput

    if png is not None and not png.parent.is_dir():
        raise BadInput(f"--png: no such folder: {png.parent}")


def _draw(curves: Curves, title: str, plot: bool, png: Path | None, metric: str) -> None:
    from producer import plots

    if png:
        plots.png(curves, png, title, metric)
        say(f"wrote {png}")
    if plot:
        click.echo(plots.terminal(curves, title, metric=metric))
