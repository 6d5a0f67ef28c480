"""Experiments as a unit: `group` (progress and ranking of a sweep or job file) and `schema`."""

from __future__ import annotations

import click

from producer.commands.common import broker_option, client, json_option, print_json
from producer.commands.curves import check_metric
from shared.metric_names import LOSS


@click.command()
@click.argument("group_id", metavar="GROUP")
@click.option("--rank-by", "rank_by", default=LOSS, show_default=True, metavar="METRIC", callback=check_metric,
              help="Rank by the last value of this metric (val_accuracy, val_loss, ...): lowest first, highest for "
                   "an accuracy.")
@json_option
@broker_option
def group(group_id: str, rank_by: str, as_json: bool, broker: str | None) -> None:
    """A group's progress and its jobs ranked by final loss (or --rank-by METRIC), with the swept fields as
    columns."""
    from producer import experiments

    c = client(broker)
    record, jobs = c.group(group_id)
    ranked = experiments.ranked(jobs, experiments.check_ranked_by(jobs, rank_by, group_id))
    if as_json:
        print_json({"group": record.id, "source": record.source, "created_at": record.created_at,
                    "size": record.size, "swept": record.swept, "counts": experiments.counts(jobs),
                    "jobs": [j.to_status() for j in jobs], "ranking": [j.id for j in ranked], "rank_by": rank_by})
    else:
        experiments.render(record, ranked, rank_by)


@click.command()
def schema() -> None:
    """Print the JSON Schema of job files (for editors; generated from the job specs)."""
    from shared.sweeps import json_schema

    print_json(json_schema())
