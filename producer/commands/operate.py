"""Operating the fleet: `metrics` (a Prometheus exporter)."""

from __future__ import annotations

import click

from producer.commands.common import broker_option, say

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9808, show_default=True)
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
    from shared.keys import Keys
    from shared.protocol import check_queue_name
    from shared.redis_conn import connect
    from shared.registry import NodeRegistry
    from shared.settings import resolve
    from shared.store import JobStore

    for q in queues:
        check_queue_name(q)
    settings = resolve(broker)
    client = connect(settings)  # exit 3 now, rather than an exporter that reports nothing
    keys = Keys(settings.key_prefix)
    store = JobStore(client, keys, settings.artifact_dir, settings.history_ttl_s)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TensorqCollector(store, NodeRegistry(client, keys), queues))

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
