"""Re-enqueueing jobs whose worker died: their lease lapsed, so any live worker sends them again. The
broker's visibility timeout (which must outlast the longest job) is never waited for."""

from __future__ import annotations

import logging
from typing import Any

from shared import broker_errors
from shared.dispatch import send_job
from shared.specs import parse_spec
from shared.vocab import JobState
from worker.context import WorkerContext

log = logging.getLogger(__name__)


def requeue_lapsed(ctx: WorkerContext, celery: Any) -> list[str]:
    """Re-send every job whose lease lapsed (now back in `queued`), and any this worker reaped but could not
    send while the broker was not serving: those it keeps, and sends once it serves again (the dead worker's
    message, left in kombu's unacked hash, is the last resort: it is redelivered after the visibility
    timeout)."""
    requeued: list[str] = []
    before = ctx.store.replication.primary()
    for job_id in [*ctx.unsent, *ctx.leases.reap()]:
        record = ctx.store.get(job_id)
        if record is None or record.state != JobState.QUEUED.value:
            _forget(ctx, job_id)
            continue
        try:
            send_job(celery, job_id, parse_spec(record.spec), record.queue)
        except Exception as e:
            if broker_errors.not_now(e) is not None:  # not now: kept, sent again on a later round
                if job_id not in ctx.unsent:
                    log.warning("job %s lost its worker; re-enqueue waits for the broker (%s)", job_id,
                                broker_errors.not_now(e))
                    ctx.unsent.append(job_id)
                continue
            log.error("job %s lost its worker and could not be re-enqueued: %s", job_id, e)
            ctx.store.mark_finished(job_id, JobState.FAILED, error=f"lost its worker; re-enqueue failed: {e}")
            _forget(ctx, job_id)
            continue
        _forget(ctx, job_id)
        log.warning("job %s lost its worker (lease lapsed); re-enqueued on queue %s", job_id, record.queue)
        requeued.append(job_id)
    if requeued and not ctx.store.replication.settle(before):
        # a failover came between: the new primary may hold a job back in `queued` without its message, so each is
        # sent again next round while it is still queued (a second message is dropped by whoever gets it second)
        ctx.unsent.extend(job_id for job_id in requeued if job_id not in ctx.unsent)
    return requeued


def _forget(ctx: WorkerContext, job_id: str) -> None:
    if job_id in ctx.unsent:
        ctx.unsent.remove(job_id)
