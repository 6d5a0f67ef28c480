"""tensorq's kombu transport against a real Redis: one client per connection pool, not one per command, and
commands still reach the server through it."""

from __future__ import annotations

import kombu.transport
from kombu import Connection
from kombu.transport import redis as kombu_redis

from shared import transport


def test_install_wins_over_a_connection_made_before_it(redis_server) -> None:
    """kombu memoizes the class behind `redis` at the first Connection; install() must still take effect."""
    kombu.transport._transport_cache["redis"] = kombu_redis.Transport  # as if a Connection came first
    transport.install()
    with Connection(redis_server.url) as conn:
        assert isinstance(conn.default_channel, transport.Channel)


def test_the_channel_reuses_one_client_per_pool_and_follows_a_new_pool(redis_server) -> None:
    transport.install()
    with Connection(redis_server.url) as conn:
        channel = conn.default_channel
        assert isinstance(channel, transport.Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        channel._put("tensorq-transport-test", {"body": "x"})  # a command through the shared client
        assert redis_server.client().llen("tensorq-transport-test") == 1
        channel._pool = None  # what kombu does when it drops a broken pool
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool
        assert second.ping()
        # the poller's own (asynchronous) client is kombu's, apart from ours
        assert channel._create_client(asynchronous=True) is not second
    redis_server.client().delete("tensorq-transport-test")
