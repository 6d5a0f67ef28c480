"""Re-enqueueing jobs whose worker died: their lease lapsed, so any live worker sends them again. The
broker's visibility timeout (which must outlast the longest job) is never waited for."""

from __future__ import annotations

import logging
from typing import Any

from shared.dispatch import send_job
from shared.protocol import JobState
from shared.specs import parse_spec
from worker.context import WorkerContext

log = logging.getLogger(__name__)


def requeue_lapsed(ctx: WorkerContext, celery: Any) -> list[str]:
    requeued = []
    for job_id in ctx.leases.reap():
        record = ctx.store.get(job_id)
        if record is None:
            continue
        try:
            send_job(celery, job_id, parse_spec(record.spec), record.queue)
        except Exception as e:
            log.error("job %s lost its worker and could not be re-enqueued: %s", job_id, e)
            ctx.store.mark_finished(job_id, JobState.FAILED, error=f"lost its worker; re-enqueue failed: {e}")
            continue
        log.warning("job %s lost its worker (lease lapsed); re-enqueued on queue %s", job_id, record.queue)
        requeued.append(job_id)
    return requeued
