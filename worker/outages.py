"""Waiting out a broker that is not serving (down, out of memory, loading, read-only: shared/broker_errors.py)
without failing the job or ending the worker.

A task that meets such an error waits here until Redis takes writes again, then goes on. A training job's
attempt stops writing at the error and, once Redis is back, the lease decides: still this worker's, the job
goes on here from its checkpoint (the history after it is trimmed, so each iteration is kept once); lapsed,
the job is left to the reaper, which re-sends it to resume from that checkpoint on any worker.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from celery.exceptions import Reject

from shared import broker_errors
from worker.context import WorkerContext

log = logging.getLogger(__name__)
T = TypeVar("T")


def wait_for_broker(ctx: WorkerContext, error: BaseException, lease: tuple[str, str] | None = None) -> None:
    """Block until the broker takes writes again: one line when the wait starts, one when it ends. The job's
    `lease` (id, holder), if given, is renewed meanwhile whenever Redis lets it (a renewal is not a write
    Redis refuses when out of memory). A worker told to stop meanwhile (SIGUSR2) stops waiting: its job
    comes back through its lease."""
    reason = broker_errors.not_now(error)
    where = ctx.settings.masked_broker_url
    log.warning("broker at %s: %s; waiting for it (no job is failed for it)", where, reason)
    started = time.monotonic()
    for attempt in itertools.count():
        time.sleep(broker_errors.backoff_s(attempt))
        if ctx.handback:
            raise Reject(f"worker stopping while the broker is {reason}", requeue=False)
        try:
            if lease is not None and not ctx.leases.renew(*lease):
                ctx.lease_lost = True  # another worker has the job: stop waiting for it
                return
            reason = broker_errors.probe(ctx.store.redis) or ""
        except Exception as e:  # refused, reset, timed out: still down
            if broker_errors.not_now(e) is None:
                raise
            reason = broker_errors.not_now(e) or ""
        if not reason:
            log.warning("broker at %s serves again after %.1f s", where, time.monotonic() - started)
            return


def through_outages(ctx: WorkerContext, job_id: str, holder: str | None, step: Callable[[], T],
                    lost: Callable[[], T]) -> T:
    """`step()` (a training attempt, or the write of its ending), run again after each broker outage for as
    long as this worker still holds the job's lease (`holder`; None: no lease to hold); `lost()` once it
    does not."""
    while True:
        try:
            return step()
        except Exception as e:
            if broker_errors.not_now(e) is None:
                raise
            outage: BaseException = e
        while True:
            wait_for_broker(ctx, outage, (job_id, holder) if holder else None)
            try:
                still_ours = holder is None or (not ctx.lease_lost and ctx.leases.renew(job_id, holder))
                break
            except Exception as e:  # gone again at once: wait again
                if broker_errors.not_now(e) is None:
                    raise
                outage = e
        if not still_ours:
            return lost()
        log.warning("job %s goes on here, where its lease still is", job_id)
