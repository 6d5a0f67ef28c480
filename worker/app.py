"""The worker's Celery app (`celery -A worker.app worker`), plus start-up and shutdown hooks.

Settings come from the environment the launcher sets (TENSORQ_BROKER_URL etc.). Importing this module
imports no torch: Flower imports it too.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Any

from celery.signals import worker_ready, worker_shutdown

from shared import settings as settings_mod
from shared.celery_app import make_celery

if TYPE_CHECKING:
    from worker.watchdog import Watchdog

log = logging.getLogger(__name__)

app = make_celery(settings_mod.resolve())
app.conf.include = ["worker.tasks"]
app.conf.worker_consumer = "worker.consumer:Consumer"  # poisoned messages fail their job, never the worker

_watchdog: Watchdog | None = None


def _on_ready(sender: Any = None, **_: object) -> None:
    """Warm torch up, learn the device, then start the watchdog so the node shows as ready."""
    global _watchdog
    from worker import context, jobs
    from worker.devices import describe_torch_device, gpu_memory
    from worker.reaper import requeue_lapsed
    from worker.watchdog import Watchdog

    queues = sorted(q.name for q in sender.task_consumer.queues) if sender.task_consumer else []
    ctx = context.init(sender.hostname, queues)
    device = jobs.resolve_device("auto")
    ctx.device = describe_torch_device(device)  # initialises CUDA here, in a process that never forks
    ctx.memory = gpu_memory
    # The launcher's cue to hand the running job back (checkpointed) before it stops the worker;
    # Celery leaves SIGUSR2 alone.
    signal.signal(signal.SIGUSR2, lambda *_: setattr(ctx, "handback", True))
    def reap() -> None:
        requeue_lapsed(ctx, app)

    _watchdog = Watchdog(ctx, reap=reap)
    _watchdog.start()
    log.info("tensorq node %s ready on %s, queues %s", ctx.node, ctx.device, ",".join(queues))


def _on_shutdown(**_: object) -> None:
    if _watchdog is not None:
        _watchdog.stop()


# Connected by call, not as decorators: Celery is untyped, and its decorators would make the hooks untyped too.
# (Signals hold their receivers weakly: these module-level functions live as long as the module.)
worker_ready.connect(_on_ready)
worker_shutdown.connect(_on_shutdown)
