"""Loss curves: `history`, `compare`, `watch`."""

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
    report_failures,
    say,
)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--every", type=click.IntRange(1), default=1, help="Only iterations divisible by N.")
@click.option("--tail", type=click.IntRange(1), help="Only the last N (after --range and --every).")
@click.option("--range", "range_text", metavar="A:B", help="Only iterations A to B-1 (either end may be left out).")
@click.option("--plot", is_flag=True, help="Draw the curve in the terminal instead of printing rows.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Write the curve to a PNG file.")
@broker_option
def history(job_id: str, fmt: str, every: int, tail: int | None, range_text: str | None, plot: bool,
            png: Path | None, broker: str | None) -> None:
    """Print a training job's loss history (every iteration, or a slice); or plot it."""
    from producer import history as hist
    from producer import render
    from shared.errors import BadInput

    cut = hist.Slice.parse(range_text, every, tail)
    check_png(png)
    job = client(broker).job(job_id)
    if job.status().kind != "train":
        raise BadInput(f"job {job.id} is an op job; only training jobs have a loss history (try tensorq result)")
    store = job.client.store
    if plot or png:
        curves = {job.id: hist.as_arrays(store, job.id, cut)}
        _draw(curves, f"loss of {job.id}", plot, png)
        return
    render.history(hist.rows(store, job.id, cut), fmt, job.id, every)


@click.command()
@click.argument("job_ids", metavar="[JOB]...", nargs=-1)
@group_option
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Write the overlaid curves to a PNG.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Draw the curves in the terminal.")
@json_option
@broker_option
def compare(job_ids: tuple[str, ...], group_id: str | None, png: Path | None, plot: bool, as_json: bool,
            broker: str | None) -> None:
    """Overlay training jobs' loss curves and tabulate how they ended and how their specs differ."""
    from producer import compare as cmp
    from producer import history as hist
    from shared.errors import BadInput

    check_png(png)
    c = client(broker)
    named = list({r.id: r for r in (c.job(j).status() for j in job_ids)}.values())  # each job once
    ops = [r.id for r in named if r.kind != "train"]
    if ops:
        raise BadInput(f"job {ops[0]} is an op job; compare takes training jobs (tensorq status shows an op)")
    given = {r.id for r in named}
    records = named + [r for r in c.group(group_id)[1] if r.id not in given] if group_id else named
    if not records:
        raise click.UsageError("give job ids, or --group GROUP")
    skipped = sum(r.kind != "train" for r in records)
    records = [r for r in records if r.kind == "train"]
    if skipped:
        say(f"note: left out {skipped} op job{'s' if skipped > 1 else ''} of the group: compare takes training jobs")
    if not records:
        raise BadInput(f"group {group_id} has no training jobs to compare")
    progress = {r.id: p for r in records if not r.finished and (p := hist.latest(c.store, r.id)) is not None}
    rows, differing = cmp.table(records, progress)
    if as_json:
        print_json({"jobs": rows, "differing_fields": differing})
    else:
        cmp.render_table(rows, differing)
    if png or (plot and not as_json):
        curves = {r.id: hist.as_arrays(c.store, r.id) for r in records}
        _draw(curves, "loss", plot and not as_json, png)


@click.command()
@click.argument("job_ids", metavar="[JOB]...", nargs=-1)
@group_option
@broker_option
def watch(job_ids: tuple[str, ...], group_id: str | None, broker: str | None) -> None:
    """Live progress bars (iteration, it/s, ETA, loss) until the jobs end; Ctrl-C leaves them running."""
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
        if final.state == "succeeded":
            render.summary(final)
    report_failures(finals)


def check_png(png: Path | None) -> None:
    """--png's folder must exist: said in one line before anything is read (as `result -o` does)."""
    from shared.errors import BadInput

    if png is not None and not png.parent.is_dir():
        raise BadInput(f"--png: no such folder: {png.parent}")


def _draw(curves, title: str, plot: bool, png: Path | None) -> None:
    from producer import plots

    if png:
        plots.png(curves, png, title)
        say(f"wrote {png}")
    if plot:
        click.echo(plots.terminal(curves, title))
