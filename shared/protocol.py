"""Names both sides agree on: task names, queues, job kinds and states."""

from __future__ import annotations

import re
from enum import Enum


class TaskName(str, Enum):
    TENSOR_OP = "tensorq.tensor_op"
    TENSOR_OPS = "tensorq.tensor_ops"  # one message carrying many op jobs (client.map_op, submit op --many)
    TRAIN = "tensorq.train"


class Queue(str, Enum):
    GPU = "gpu"
    CPU = "cpu"


# Extra queues name node groups (`tensorq worker --queue NAME`, `submit --queue NAME`).
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        from shared.errors import BadInput

        raise BadInput(f"--queue: {name!r} is not a queue name (letters, digits, '.', '_', '-')")
    return name


class Priority(str, Enum):
    """Each queue comes in three levels, `<queue>.high`, `<queue>`, `<queue>.low`, which workers consume
    strictly in that order (Celery's Redis priority emulation misbehaves: celery/celery#8967)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


def queue_for(base: str, priority: str = Priority.NORMAL.value) -> str:
    return base if priority == Priority.NORMAL.value else f"{base}.{priority}"


def queues_in_priority_order(bases: list[str]) -> list[str]:
    """What a worker consumes for its base queues: every high queue first, then normal, then low."""
    return [queue_for(b, p.value) for p in Priority for b in bases]


class Kind(str, Enum):
    OP = "op"
    TRAIN = "train"


TASK_FOR_KIND = {Kind.OP: TaskName.TENSOR_OP, Kind.TRAIN: TaskName.TRAIN}


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class NodeState(str, Enum):
    """A worker node's state in its heartbeat."""

    STARTING = "starting"  # claimed by the launcher, not yet consuming
    IDLE = "idle"
    RUNNING = "running"  # running the job named in the heartbeat


READY_NODE_STATES = frozenset({NodeState.IDLE.value, NodeState.RUNNING.value})
