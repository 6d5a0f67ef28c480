"""Sending a job's task: by name, to a queue, with a one-line description for Flower. The producer and
the reaper (which re-sends a job whose worker died) both send this one way."""

from __future__ import annotations

from typing import Any

from shared import kinds
from shared.protocol import TaskName
from shared.specs import AnySpec, TensorOpSpec

# Publishing retries briefly; a broker that is down is reported, not waited for.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def wire_spec(spec: AnySpec) -> dict[str, Any]:
    """The spec as sent: only the fields that were set (the job record keeps the whole spec), so a worker one
    version older still runs any job that uses no newer option."""
    return spec.model_dump(mode="json", exclude_unset=True)


def send_job(celery: Any, job_id: str, spec: AnySpec, queue: str) -> None:
    celery.send_task(kinds.of(spec.kind).task.value, kwargs={"spec": wire_spec(spec)},
                     task_id=job_id, queue=queue, argsrepr="()", kwargsrepr=spec.describe(), retry=True,
                     retry_policy=RETRY_POLICY)


def send_batch(celery: Any, task_id: str, jobs: list[tuple[str, TensorOpSpec]], queue: str) -> None:
    """Many op jobs in one message (the caller keeps each under defaults.BATCH_MAX_OPS)."""
    payload = [{"id": job_id, "spec": wire_spec(spec)} for job_id, spec in jobs]
    celery.send_task(TaskName.TENSOR_OPS.value, kwargs={"jobs": payload}, task_id=task_id, queue=queue,
                     argsrepr="()", kwargsrepr=f"{len(jobs)} ops: {jobs[0][1].describe()}, ...", retry=True,
                     retry_policy=RETRY_POLICY)
