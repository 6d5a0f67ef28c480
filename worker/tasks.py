"""The Celery tasks, one per job kind in shared/kinds.py plus the batch of ops: thin shells that hand the
message's arguments to worker.jobs.run_job, waiting out a broker that is not serving.

They take any arguments, so a message with wrong ones reaches run_job and fails its job with a clear
reason, instead of failing inside Celery with the job left `queued`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from shared import broker_errors
from shared.errors import JobCancelled, JobFailed
from shared.kinds import KINDS, JobKind
from shared.protocol import TaskName
from worker import context, outages
from worker.app import app
from worker.jobs import run_job


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


def _task(entry: JobKind) -> None:
    """The task for one job kind, named as its registry entry says (shared/kinds.py)."""

    @app.task(name=entry.task.value, bind=True, throws=(JobFailed, JobCancelled))  # type: ignore[untyped-decorator]
    @through_broker_outages
    def run(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | str:
        return run_job(self.request.id, self.request.hostname, args, kwargs, entry)


for _entry in KINDS.values():
    _task(_entry)


@app.task(name=TaskName.TENSOR_OPS.value, bind=True, throws=(JobFailed,))  # type: ignore[untyped-decorator]
@through_broker_outages
def tensor_ops(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | str:
    from worker.batch import run_batch

    return run_batch(self.request.id, self.request.hostname, args, kwargs)
