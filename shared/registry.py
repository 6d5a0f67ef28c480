"""The node registry: each worker's heartbeat record, so anyone can see the fleet without asking Celery.

A busy solo-pool worker cannot answer Celery remote control, but its heartbeat thread still writes here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from shared import defaults
from shared.keys import Keys
from shared.vocab import NodeState

# Heartbeat fields that are numbers, and lists; everything else is text. Empty means "not applicable" (None).
INT_FIELDS = ("pid", "gpu_index", "jobs_done", "iteration", "iterations", "memory_free_bytes", "memory_total_bytes")
FLOAT_FIELDS = ("seen_at",)
LIST_FIELDS = ("queues",)  # written comma-separated

if TYPE_CHECKING:
    import redis


class NodeRegistry:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def claim(self, name: str, owner: str) -> bool:
        """Take `name` for a worker about to start; False when a live worker already holds it."""
        key = self.keys.node(name)
        if not self.redis.hsetnx(key, "owner", owner):
            return False
        now = time.time()
        with self.redis.pipeline() as p:
            p.hset(key, mapping={"name": name, "state": NodeState.STARTING.value, "seen_at": repr(now)})
            p.expire(key, defaults.HEARTBEAT_TTL_S * 4)  # room for a slow first start (imports, CUDA)
            p.zadd(self.keys.nodes, {name: now})
            p.execute()
        return True

    def beat(self, name: str, fields: dict[str, Any]) -> None:
        now = time.time()
        key = self.keys.node(name)
        with self.redis.pipeline() as p:
            p.hset(key, mapping={**{k: str(v) for k, v in fields.items()}, "name": name, "seen_at": repr(now)})
            p.expire(key, defaults.HEARTBEAT_TTL_S)
            p.zadd(self.keys.nodes, {name: now})
            p.execute()

    def drop(self, name: str) -> None:
        with self.redis.pipeline() as p:
            p.delete(self.keys.node(name))
            p.zrem(self.keys.nodes, name)
            p.execute()

    def live(self) -> list[dict[str, Any]]:
        """Every node whose heartbeat has not expired, by name, with numbers as numbers."""
        cutoff = time.time() - defaults.HEARTBEAT_TTL_S
        self.redis.zremrangebyscore(self.keys.nodes, "-inf", cutoff)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in self.redis.zrange(self.keys.nodes, 0, -1)]
        with self.redis.pipeline() as p:
            for name in names:
                p.hgetall(self.keys.node(name))
            raws = p.execute()
        return [typed({k.decode(): v.decode() for k, v in raw.items()}) for raw in raws if raw]

    def serves(self, queue: str) -> bool:
        """Whether a live node consumes `queue`."""
        return queue in served_queues(self.live())


def served_queues(nodes: list[dict[str, Any]]) -> set[str]:
    return {q for node in nodes for q in node.get("queues") or []}


def typed(node: dict[str, str]) -> dict[str, Any]:
    """A heartbeat as `workers --json` shows it: numbers as numbers, lists as lists, absent values None."""
    out: dict[str, Any] = {k: v or None for k, v in node.items()}
    for name in INT_FIELDS:
        out[name] = int(node[name]) if node.get(name, "").isdigit() else None
    for name in FLOAT_FIELDS:
        out[name] = float(node[name]) if node.get(name) else None
    for name in LIST_FIELDS:
        out[name] = [q for q in node.get(name, "").split(",") if q]
    return out
