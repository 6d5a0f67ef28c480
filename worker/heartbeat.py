"""A daemon thread that keeps the worker's node record fresh, even while a job holds the main thread."""

from __future__ import annotations

import logging
import threading

from shared import defaults
from worker.context import WorkerContext

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, ctx: WorkerContext, interval_s: float = defaults.HEARTBEAT_INTERVAL_S) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tensorq-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        self.ctx.registry.beat(self.ctx.node, self.ctx.heartbeat_fields())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s * 2)
        try:
            self.ctx.registry.drop(self.ctx.node)
        except Exception as e:  # the broker may already be gone at shutdown; nothing to clean then
            log.warning("could not drop node record: %s", e)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception as e:  # keep beating through a Redis blip
                log.warning("heartbeat failed: %s", e)
