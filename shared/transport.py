"""Kombu's Redis transport, hardened against bytes in a queue that are not a message at all, and spared a
client per command.

Kombu pops such an item and then fails to parse it: garbage raises out of the worker's event loop and kills
the process ("Unrecoverable error: JSONDecodeError"), and JSON that is not an envelope is mistaken for a
lost connection. Here the popped item is logged and dropped, and the worker goes on serving. Messages that
are envelopes but carry a bad body (pickle, garbage) still reach Celery, whose consumer (worker/consumer.py)
fails their job.

Kombu also builds a new redis.Redis around its connection pool for every publish, ack and event (about 70 us
each with redis-py 8, and a tiny op job takes five of them on the worker and two on the client); one client
per pool does the same work.

The same hardening covers `sentinel://` URLs (kombu's Sentinel channel, which asks redis-py's Sentinel for the
primary on every new connection): after a failover the worker reconnects to the new primary as after any lost
connection, and a READONLY reply from a demoted primary is a lost connection too (celery/celery#7946).

And a broker that is not serving now (shared/broker_errors.py: out of memory, loading, read-only, ...) is a
lost connection here, never an "Unrecoverable error": Celery reconnects with its back-off, and a connection
counts as made only once Redis accepts writes again. A message already popped from its queue when Redis
stops taking writes is held until Redis takes it into the unacked hash, never dropped.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable

import redis
from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis

from shared import broker_errors

# kombu ships py.typed with its methods unannotated: each call into one below is marked no-untyped-call.

log = logging.getLogger(__name__)


class BrokerNotServing(redis.exceptions.ConnectionError):
    """Raised when Redis answers but refuses writes for now (out of memory, read-only, loading...): for kombu
    and Celery a connection that could not be made, retried with their back-off."""


# redis-py's classes for "not now" replies, from the one table: lost connections, for kombu and Celery.
NOT_NOW_REPLY_ERRORS = tuple(getattr(redis.exceptions, name) for name in broker_errors.NOT_NOW_CLASSES
                             if issubclass(getattr(redis.exceptions, name, type(None)), redis.exceptions.ResponseError))


class QoS(kombu_redis.QoS):
    def append(self, message: object, delivery_tag: str) -> None:
        # The message has left its queue: until the unacked hash holds it, this process is its only copy.
        for attempt in itertools.count():
            try:
                super().append(message, delivery_tag)  # type: ignore[no-untyped-call]
                return
            except Exception as e:
                reason = broker_errors.not_now(e)
                if reason is None:
                    raise
                if attempt == 0:
                    log.warning("broker %s: holding a received message until it takes it back", reason)
                time.sleep(broker_errors.backoff_s(attempt))


class Hardened:
    """What tensorq changes in kombu's Redis channels (plain and Sentinel alike): put first in the bases."""

    QoS = QoS
    _sync_client: redis.Redis | None = None
    # kombu's Channel's, next in the MRO (annotated only: nothing here shadows them)
    client: redis.Redis
    pool: redis.ConnectionPool
    close: Callable[[], None]

    def __init__(self, *args: object, **kwargs: object) -> None:
        # PINGs: a broker that does not answer fails here
        super().__init__(*args, **kwargs)
        reason = broker_errors.probe(self.client)
        if reason is not None:
            try:
                self.close()  # out of the poller's cycle, its pools dropped
            except Exception as e:
                log.debug("closing a channel to a broker that is not serving: %s", e)
            raise BrokerNotServing(reason)

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        client: redis.Redis
        if asynchronous:  # the poller's own connection: kombu caches that one itself
            client = super()._create_client(asynchronous=True)  # type: ignore[misc]
            return client
        pool = self.pool  # a new one after kombu drops a broken pool: then a new client too
        if self._sync_client is None or self._sync_client.connection_pool is not pool:
            client = super()._create_client()  # type: ignore[misc]
            self._sync_client = client
        return self._sync_client

    def _brpop_read(self, **options: object) -> bool:
        try:
            return bool(super()._brpop_read(**options))  # type: ignore[misc]
        except (ValueError, TypeError, AttributeError) as e:  # not JSON at all
            log.error("dropped an item from a queue that is not a task message (%s: %s)", type(e).__name__, e)
            return True  # the item was consumed; the next read goes on as usual


class Channel(Hardened, kombu_redis.Channel):
    pass


class SentinelChannel(Hardened, kombu_redis.SentinelChannel):
    pass


class Delivering:
    """What tensorq changes in kombu's Redis transports: put first in the bases."""

    def _deliver(self, message: object, queue: str) -> None:
        # JSON, but not an envelope: kombu would fail with a KeyError it counts as a lost connection
        properties = message.get("properties") if isinstance(message, dict) else None
        if not (isinstance(message, dict) and isinstance(properties, dict)
                and isinstance(properties.get("delivery_tag"), str) and "body" in message):
            log.error("dropped an item from queue %s that is not a task message: %.200r", queue, message)
            return
        super()._deliver(message, queue)  # type: ignore[misc]


class Transport(Delivering, kombu_redis.Transport):
    Channel = Channel
    connection_errors = (*kombu_redis.Transport.connection_errors, *NOT_NOW_REPLY_ERRORS)


class SentinelTransport(Delivering, kombu_redis.SentinelTransport):
    Channel = SentinelChannel
    connection_errors = (*kombu_redis.SentinelTransport.connection_errors, *NOT_NOW_REPLY_ERRORS)


# URL scheme -> this module's transport for it (shared/celery_app.py hands kombu `sentinel://` for sentinels://
# too: it gives kombu the TLS options itself).
TRANSPORTS = {"redis": "Transport", "rediss": "Transport", "sentinel": "SentinelTransport"}


def install() -> None:
    """Make `redis://`, `rediss://` and `sentinel://` broker URLs use these transports in this process (every
    Celery app in it: each behaves as kombu's, but for the changes above)."""
    for scheme, name in TRANSPORTS.items():
        kombu_transport.TRANSPORT_ALIASES[scheme] = f"{__name__}:{name}"
        # kombu memoizes a name's class the first time a Connection is made: one made before this call
        # (another Celery app in the process, say) must not pin kombu's own class for good
        kombu_transport._transport_cache.pop(scheme, None)
