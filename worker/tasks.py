"""The Celery tasks: thin shells that hand the message's arguments to worker.jobs.run_job.

They take any arguments, so a message with wrong ones reaches run_job and fails its job with a clear
reason, instead of failing inside Celery with the job left `queued`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from celery.exceptions import Reject

from shared.errors import JobCancelled, JobFailed
from shared.protocol import Kind, TaskName
from worker.app import app
from worker.jobs import execute_op, run_job


def requeue_on_redis_errors(task: Callable[..., dict[str, Any] | str]) -> Callable[..., dict[str, Any] | str]:
    """Redis unreachable mid-job: put the message back (a retry on a healthy broker), rather than let Celery
    acknowledge a failed task and lose the job."""

    @functools.wraps(task)
    def shell(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | str:
        import redis

        try:
            return task(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise Reject(f"Redis unreachable: {e}", requeue=True) from None

    return shell


def execute_train(*args: Any) -> dict[str, Any]:
    from worker.training import execute_train as run  # torch loads with the first job, not with the app

    return run(*args)


@app.task(name=TaskName.TRAIN.value, bind=True, throws=(JobFailed, JobCancelled))
@requeue_on_redis_errors
def train(self, *args: Any, **kwargs: Any) -> dict[str, Any] | str:
    return run_job(self.request.id, self.request.hostname, args, kwargs, Kind.TRAIN.value, execute_train)


@app.task(name=TaskName.TENSOR_OP.value, bind=True, throws=(JobFailed, JobCancelled))
@requeue_on_redis_errors
def tensor_op(self, *args: Any, **kwargs: Any) -> dict[str, Any] | str:
    return run_job(self.request.id, self.request.hostname, args, kwargs, Kind.OP.value, execute_op)


@app.task(name=TaskName.TENSOR_OPS.value, bind=True, throws=(JobFailed,))
@requeue_on_redis_errors
def tensor_ops(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
    from worker.batch import run_batch

    return run_batch(self.request.id, self.request.hostname, args, kwargs)
