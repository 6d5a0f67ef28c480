"""A daemon thread beside the running job (which holds the main thread): it writes the node's heartbeat,
renews the job's lease, notices a cancel request, and re-enqueues jobs whose worker died."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared import broker_errors, defaults
from worker.context import WorkerContext

log = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, ctx: WorkerContext, reap: Callable[[], None]) -> None:
        self.ctx = ctx
        self.reap = reap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tensorq-watchdog", daemon=True)
        self._outage: str | None = None  # what keeps the broker from serving, while it does not

    def start(self) -> None:
        try:
            self.beat()
        except Exception as e:  # a broker not serving at start-up: the thread beats once it serves
            self._trouble(e)
        self._thread.start()

    def beat(self) -> None:
        self.ctx.registry.beat(self.ctx.node, self.ctx.heartbeat_fields())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.ctx.registry.drop(self.ctx.node)
        except Exception as e:  # the broker may already be gone at shutdown; nothing to clean then
            log.warning("could not drop node record: %s", e)

    def _run(self) -> None:
        next_beat = next_renew = next_reap = 0.0
        while not self._stop.wait(defaults.CANCEL_CHECK_S):
            now = time.monotonic()
            try:
                self._watch_job(now >= next_renew)
                if now >= next_renew:
                    next_renew = now + defaults.LEASE_RENEW_S
                beat = now >= next_beat
                if beat:
                    self.beat()
                    next_beat = now + defaults.HEARTBEAT_INTERVAL_S
                if now >= next_reap:
                    self.reap()
                    next_reap = now + defaults.REAP_INTERVAL_S
                if self._outage is not None and beat:  # a beat, a write, got through
                    log.warning("watchdog: the broker serves again (it was %s)", self._outage)
                    self._outage = None
            except Exception as e:  # keep watching through a Redis blip
                self._trouble(e)

    def _trouble(self, error: BaseException) -> None:
        """One line per broker outage (it may last minutes, at 4 tries a second); any other error each time."""
        reason = broker_errors.not_now(error)
        if reason is None:
            log.warning("watchdog: %s", error)
        elif self._outage is None:
            log.warning("watchdog: the broker is not serving (%s); heartbeats and reaping resume when it does",
                        reason)
            self._outage = reason

    def _watch_job(self, renew: bool) -> None:
        ctx = self.ctx
        job, holder = ctx.current_job, ctx.lease_holder
        if job is None or holder is None:
            return
        if ctx.store.cancel_requested(job) and ctx.current_job == job:
            ctx.cancel = True
        if renew and not ctx.leases.renew(job, holder) and ctx.current_job == job:
            ctx.lease_lost = True
