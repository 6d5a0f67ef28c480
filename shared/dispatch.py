"""Sending a job's task: by name, to a queue, with a one-line description for Flower. The producer and
the reaper (which re-sends a job whose worker died) both send this one way."""

from __future__ import annotations

from typing import Any

from shared.protocol import TASK_FOR_KIND, Kind
from shared.specs import TensorOpSpec, TrainSpec, describe

# Publishing retries briefly; a broker that is down is reported, not waited for.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def send_job(celery: Any, job_id: str, spec: TensorOpSpec | TrainSpec, queue: str) -> None:
    celery.send_task(TASK_FOR_KIND[Kind(spec.kind)].value, kwargs={"spec": spec.model_dump(mode="json")},
                     task_id=job_id, queue=queue, argsrepr="()", kwargsrepr=describe(spec), retry=True,
                     retry_policy=RETRY_POLICY)
