"""Experiments as a unit: `group` (progress and ranking of a sweep or job file) and `schema`."""

from __future__ import annotations

import click

from producer.commands.common import broker_option, client, json_option, print_json


@click.command()
@click.argument("group_id", metavar="GROUP")
@json_option
@broker_option
def group(group_id: str, as_json: bool, broker: str | None) -> None:
    """A group's progress and its jobs ranked by final loss, with the swept fields as columns."""
    from producer import experiments

    c = client(broker)
    record, jobs = c.group(group_id)
    ranked = experiments.ranked(jobs)
    if as_json:
        print_json({"group": record.id, "source": record.source, "created_at": record.created_at,
                    "size": record.size, "swept": record.swept, "counts": experiments.counts(jobs),
                    "jobs": [j.to_status() for j in jobs], "ranking": [j.id for j in ranked]})
    else:
        experiments.render(record, ranked)


@click.command()
def schema() -> None:
    """Print the JSON Schema of job files (for editors; generated from the job specs)."""
    from shared.sweeps import json_schema

    print_json(json_schema())
