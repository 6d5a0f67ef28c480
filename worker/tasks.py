"""The Celery tasks: thin shells that hand the spec to worker.jobs and return a small summary."""

from __future__ import annotations

from typing import Any

from shared.errors import JobFailed
from shared.protocol import Kind, TaskName
from worker.app import app
from worker.jobs import execute_op, execute_train, run_job


@app.task(name=TaskName.TRAIN.value, bind=True, throws=(JobFailed,))
def train(self, spec: Any = None) -> dict[str, Any]:
    return run_job(self.request.id, self.request.hostname, spec, Kind.TRAIN.value, execute_train)


@app.task(name=TaskName.TENSOR_OP.value, bind=True, throws=(JobFailed,))
def tensor_op(self, spec: Any = None) -> dict[str, Any]:
    return run_job(self.request.id, self.request.hostname, spec, Kind.OP.value, execute_op)
