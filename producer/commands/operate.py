"""Operating the fleet: `metrics` (a Prometheus exporter), `prune` (deleting old finished jobs)."""

from __future__ import annotations

import click

from producer.commands.common import broker_option, client, json_option, print_json, say
from shared import defaults
from shared.vocab import FINISHED_STATES, JobState, Kind

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=defaults.DEFAULT_METRICS_PORT, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Where to listen; beyond loopback only when given (metrics carry no secret, but no login either).")
@click.option("--queue", "queues", multiple=True, metavar="NAME",
              help="Also report this queue (repeatable); gpu, cpu and every queue a live worker consumes always are.")
@broker_option
def metrics(port: int, address: str, queues: tuple[str, ...], broker: str | None) -> None:
    """Serve Prometheus metrics at /metrics: queue depths and ages, jobs by state, run times, workers."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app

    from producer.exporter import TensorqCollector
    from shared.errors import TensorqError
    from shared.protocol import check_queue_name
    from shared.redis_conn import connect
    from shared.registry import NodeRegistry
    from shared.settings import resolve
    from shared.store import JobStore

    for q in queues:
        check_queue_name(q)
    settings = resolve(broker)
    client = connect(settings)  # exit 3 now, rather than an exporter that reports nothing
    store = JobStore.of(client, settings)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TensorqCollector(store, NodeRegistry(client, store.keys), queues))

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # one line per scrape is noise
            pass

    server_class = WSGIServer
    if ":" in address:  # an IPv6 address
        import socket

        class WSGIServerV6(WSGIServer):
            address_family = socket.AF_INET6

        server_class = WSGIServerV6
    try:
        server = make_server(address, port, make_wsgi_app(registry), server_class=server_class,
                             handler_class=QuietHandler)
    except OSError as e:
        raise TensorqError(f"cannot listen on {address}:{port}: {e.strerror or e}") from None
    if address not in LOOPBACK:
        say(f"warning: metrics served beyond loopback on {address}:{port}, without a login")
    say(f"serving tensorq metrics for {settings.masked_broker_url} at http://{address}:{port}/metrics")
    with server:
        server.serve_forever()


@click.command()
@click.option("--older-than", "older_than", metavar="DURATION",
              help="Delete finished jobs that ended more than this long ago: 7d, 12h, 30m.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(Kind.values()),
              help="Only jobs of this kind (repeatable; default: every kind).")
@click.option("--state", "states", multiple=True, type=click.Choice(JobState.values()),
              help="Only jobs that ended so: succeeded, failed or cancelled (repeatable; default: all three). "
                   "Queued and running jobs are never pruned.")
@click.option("--datasets", is_flag=True,
              help="Also delete the datasets no remaining job names. Reads every job's spec that can name one "
                   "(every training job: O(jobs)); a job submitted meanwhile that names a deleted dataset fails, "
                   "saying to submit it again.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@json_option
@broker_option
def prune(older_than: str | None, kinds: tuple[str, ...], states: tuple[str, ...], datasets: bool, dry_run: bool,
          as_json: bool, broker: str | None) -> None:
    """Delete finished jobs that ended long ago, with all they own (record, metric series, artifacts and their
    files, checkpoint, index entries, group membership), a page at a time.

    Finished op jobs also expire on their own (TENSORQ_OP_TTL, 7 days by default); this is for the rest."""
    import time

    from producer import durations

    if older_than is None and not datasets:
        raise click.UsageError("give --older-than DURATION (and/or --datasets)")
    finished = [s.value for s in JobState if s in FINISHED_STATES]
    for state in states:
        if state not in finished:
            raise click.BadParameter(f"{state} jobs are not finished and are never pruned (give {', '.join(finished)})",
                                     param_hint="--state")
    ago = durations.duration_s(older_than, "--older-than") if older_than is not None else None
    store = client(broker).store
    by_kind: dict[str, int] = {}
    if ago is not None:
        by_kind = store.prune(time.time() - ago, kinds or Kind.values(), states or finished, dry_run)
    total = sum(by_kind.values())
    gone_datasets = store.prune_datasets(dry_run) if datasets else None
    if as_json:
        print_json({"deleted": total, "dry_run": dry_run, "kinds": by_kind,
                    **({"datasets": gone_datasets} if gone_datasets is not None else {})})
        return
    verb = "would delete" if dry_run else "deleted"
    if ago is not None:
        each = ", ".join(f"{kind} {n}" for kind, n in by_kind.items() if n)
        click.echo(f"{verb} {total} finished job{'s' * (total != 1)} that ended more than {older_than} ago"
                   + (f" ({each})" if each else ""))
    if gone_datasets is not None:
        click.echo(f"{verb} {gone_datasets} dataset{'s' * (gone_datasets != 1)} no job names")
