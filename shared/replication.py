"""Replicas: making the writes that matter outlive their primary.

Redis replicates asynchronously, so a write the primary acknowledged can be missing on the replica a failover
promotes. What a replica holds is always a prefix of what its primary wrote, in the order it was written, on every
connection alike: a replica that has a write has every write before it. tensorq leans on that order (a
checkpoint names stream entries written before it; a job's ending comes before its message's acknowledgement)
and narrows the window with WAIT at the two places a lost write would lose a job or mislead a user:

- after a submit's records, datasets and messages (producer/client.py), before it says the jobs are queued;
- after a leased job's ending (worker/jobs.py), before its message is acknowledged.

Both only where the primary has replicas (none: nothing to wait for), and never for longer than REPLICA_WAIT_MS.
A submit also learns whether the primary it wrote to is still the primary (its replication id, which a promoted
replica changes): when it is not, what it wrote may be gone, and the caller writes it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from shared import defaults

if TYPE_CHECKING:
    import redis

    from shared.keys import Keys

log = logging.getLogger(__name__)


class Primary(NamedTuple):
    replication_id: str  # a promoted replica takes a new one
    replicas: int  # connected to it now


class Replication:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._seen: tuple[float, Primary] | None = None  # (time.monotonic() when read, what was read)

    def primary(self) -> Primary:
        """The primary as last read (at most REPLICAS_RECOUNT_S ago): one INFO now and then, not per submit."""
        now = time.monotonic()
        if self._seen is None or now - self._seen[0] > defaults.REPLICAS_RECOUNT_S:
            self._seen = (now, _primary(self.redis.info("replication")))
        return self._seen[1]

    def settle(self, before: Primary) -> bool:
        """Block until a replica holds every write this process made so far (WAIT, REPLICA_WAIT_MS at most),
        where the primary has replicas. False when the primary is no longer the one `before` names (a failover
        came between: writes made before it may be gone); True otherwise, also when no replica took the writes
        in time (logged: they are on the primary, and only a failover now would lose them)."""
        if not before.replicas:
            return True
        with self.redis.pipeline(transaction=False) as p:  # one connection: WAIT counts that connection's writes
            # PUBLISH is replicated like a write and changes no key: it moves this connection's replication
            # offset past every write the primary took before it, whichever connection made them.
            p.publish(self.keys.replicated, b"")
            p.wait(1, defaults.REPLICA_WAIT_MS)
            p.info("replication")
            _, acked, info = p.execute()
        now = _primary(info)
        self._seen = (time.monotonic(), now)
        if now.replication_id != before.replication_id:
            log.warning("the primary changed (a failover?) while writing: writing again what it lacks")
            return False
        if not acked:
            log.warning("no replica confirmed the last writes within %d ms; they are on the primary only",
                        defaults.REPLICA_WAIT_MS)
            self._seen = None  # count the replicas again next time: one may have gone
        return True


def _primary(info: Mapping[str, Any]) -> Primary:
    return Primary(str(info.get("master_replid", "")), int(info.get("connected_slaves", 0)))
