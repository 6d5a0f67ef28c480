"""What a running worker process knows about itself: its store, its node name, what it is doing."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared import settings as settings_mod
from shared.redis_conn import connect
from shared.registry import NodeRegistry
from shared.store import JobStore
from shared.vocab import NodeState, StopReason

if TYPE_CHECKING:
    from shared.leases import Leases
    from shared.settings import Settings


@dataclass
class WorkerContext:
    settings: Settings
    store: JobStore
    registry: NodeRegistry
    leases: Leases
    node: str
    queues: list[str] = field(default_factory=list)
    device: str = "cpu"
    jobs_done: int = 0
    memory: Callable[[], tuple[int, int] | None] = lambda: None  # (free, total) bytes of this worker's GPU
    handback: bool = False  # set by SIGUSR2 (the launcher's cue): put the running job back on its queue
    # the running job, if any; the watchdog thread reads these and sets the flags below
    current_job: str | None = None
    lease_holder: str | None = None
    progress: tuple[int, int] | None = None  # (iterations done, iterations) of a running training job
    cancel: bool = False  # its user asked to cancel it
    lease_lost: bool = False  # another worker has taken it over
    unsent: list[str] = field(default_factory=list)  # jobs reaped here whose re-send waits for the broker

    def start_job(self, job_id: str, lease_holder: str) -> None:
        self.current_job, self.lease_holder, self.progress = job_id, lease_holder, None
        self.cancel = self.lease_lost = False

    def end_job(self) -> None:
        self.current_job = self.lease_holder = self.progress = None
        self.jobs_done += 1

    def stop_reason(self) -> StopReason | None:
        """Why the running job must stop now, if it must: asked once per training iteration."""
        if self.cancel:
            return StopReason.CANCEL
        if self.handback:
            return StopReason.HANDBACK
        if self.lease_lost:
            return StopReason.LEASE_LOST
        return None

    def heartbeat_fields(self) -> dict[str, object]:
        done, total = self.progress or ("", "")
        free, total_mem = self.memory() or ("", "")
        return {"host": socket.gethostname(), "pid": os.getpid(), "queues": ",".join(self.queues),
                "device": self.device, "gpu_index": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                "memory_free_bytes": free, "memory_total_bytes": total_mem,
                "state": (NodeState.RUNNING if self.current_job else NodeState.IDLE).value,
                "job": self.current_job or "",
                "iteration": done, "iterations": total, "jobs_done": self.jobs_done}


_context: WorkerContext | None = None


def init(node: str, queues: list[str]) -> WorkerContext:
    global _context
    settings = settings_mod.resolve()
    client = connect(settings, check=False)
    store = JobStore.of(client, settings)
    _context = WorkerContext(settings, store, NodeRegistry(client, store.keys), store.leases, node, queues)
    return _context


def get(node: str = "") -> WorkerContext:
    """The process's context; a task run outside a started worker (tests, eager mode) gets one on demand."""
    return _context or init(node or f"local@{socket.gethostname()}", [])
