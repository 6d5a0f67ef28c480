"""The Celery tasks: thin shells that hand the message's arguments to worker.jobs.run_job, waiting out a
broker that is not serving.

They take any arguments, so a message with wrong ones reaches run_job and fails its job with a clear
reason, instead of failing inside Celery with the job left `queued`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from shared import broker_errors
from shared.errors import JobCancelled, JobFailed
from shared.protocol import Kind, TaskName
from worker import context, outages
from worker.app import app
from worker.jobs import execute_op, run_job


def through_broker_outages(task: Callable[..., dict[str, Any] | str]) -> Callable[..., dict[str, Any] | str]:
    """A broker that is not serving (down, out of memory, loading...: shared/broker_errors.py) never fails a
    job: the worker waits for it, then runs the message again (ops and batches keep the first ending;
    a training job already begun goes on through worker/outages.py)."""

    @functools.wraps(task)
    def shell(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | str:
        while True:
            try:
                return task(self, *args, **kwargs)
            except Exception as e:
                if broker_errors.not_now(e) is None:
                    raise
                outages.wait_for_broker(context.get(self.request.hostname), e)

    return shell


def execute_train(*args: Any) -> dict[str, Any]:
    from worker.training import execute_train as run  # torch loads with the first job, not with the app

    return run(*args)


@app.task(name=TaskName.TRAIN.value, bind=True, throws=(JobFailed, JobCancelled))
@through_broker_outages
def train(self, *args: Any, **kwargs: Any) -> dict[str, Any] | str:
    return run_job(self.request.id, self.request.hostname, args, kwargs, Kind.TRAIN.value, execute_train)


@app.task(name=TaskName.TENSOR_OP.value, bind=True, throws=(JobFailed, JobCancelled))
@through_broker_outages
def tensor_op(self, *args: Any, **kwargs: Any) -> dict[str, Any] | str:
    return run_job(self.request.id, self.request.hostname, args, kwargs, Kind.OP.value, execute_op)


@app.task(name=TaskName.TENSOR_OPS.value, bind=True, throws=(JobFailed,))
@through_broker_outages
def tensor_ops(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
    from worker.batch import run_batch

    return run_batch(self.request.id, self.request.hostname, args, kwargs)
