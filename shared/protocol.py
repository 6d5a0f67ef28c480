"""Names both sides agree on: task names and queues (the vocabularies are in shared/vocab.py)."""

from __future__ import annotations

import re
from enum import Enum

from shared.vocab import Priority


class TaskName(str, Enum):
    TENSOR_OP = "tensorq.tensor_op"
    TENSOR_OPS = "tensorq.tensor_ops"  # one message carrying many op jobs (client.map_op, submit op --many)
    TRAIN = "tensorq.train"
    RUN = "tensorq.run"  # a job function, by name (never code)


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


def queue_for(base: str, priority: str = Priority.NORMAL.value) -> str:
    return base if priority == Priority.NORMAL.value else f"{base}.{priority}"


def queues_in_priority_order(bases: list[str]) -> list[str]:
    """What a worker consumes for its base queues: every high queue first, then normal, then low."""
    return [queue_for(b, p.value) for p in Priority for b in bases]

