"""Kombu's Redis transport, hardened against bytes in a queue that are not a message at all.

Kombu pops such an item and then fails to parse it: garbage raises out of the worker's event loop and kills
the process ("Unrecoverable error: JSONDecodeError"), and JSON that is not an envelope is mistaken for a
lost connection. Here the popped item is logged and dropped, and the worker goes on serving. Messages that
are envelopes but carry a bad body (pickle, garbage) still reach Celery, whose consumer (worker/consumer.py)
fails their job.
"""

from __future__ import annotations

import logging

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: object) -> bool:
        try:
            return super()._brpop_read(**options)
        except (ValueError, TypeError, AttributeError) as e:  # not JSON at all
            log.error("dropped an item from a queue that is not a task message (%s: %s)", type(e).__name__, e)
            return True  # the item was consumed; the next read goes on as usual


class Transport(kombu_redis.Transport):
    Channel = Channel

    def _deliver(self, message: object, queue: str) -> None:
        # JSON, but not an envelope: kombu would fail with a KeyError it counts as a lost connection
        properties = message.get("properties") if isinstance(message, dict) else None
        if not (isinstance(properties, dict) and isinstance(properties.get("delivery_tag"), str)
                and "body" in message):
            log.error("dropped an item from queue %s that is not a task message: %.200r", queue, message)
            return
        super()._deliver(message, queue)


def install() -> None:
    """Make `redis://` and `rediss://` broker URLs use this transport in this process."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
