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

    cut = hist.Slice.parse(range_text, every, tail)
    job = client(broker).job(job_id)
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

    c = client(broker)
    records = [c.job(j).status() for j in jobs_or_group(c, job_ids, group_id)]
    rows, differing = cmp.table(records)
    if as_json:
        print_json({"jobs": rows, "differing_fields": differing})
    else:
        cmp.render_table(rows, differing)
    curves = {r.id: hist.as_arrays(c.store, r.id) for r in records if r.kind == "train"}
    if curves and (png or (plot and not as_json)):
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


def _draw(curves, title: str, plot: bool, png: Path | None) -> None:
    from producer import plots

    if png:
        plots.png(curves, png, title)
        say(f"wrote {png}")
    if plot:
        click.echo(plots.terminal(curves, title))
