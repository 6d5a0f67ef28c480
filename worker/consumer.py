"""Celery's consumer, told what to do with a poisoned message: when the message names a job (its task
id), that job ends `failed` with the reason; otherwise the message is logged and dropped. Either way the
worker keeps serving (Celery itself already logs and acknowledges such messages)."""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

log = logging.getLogger(__name__)


class Consumer(CeleryConsumer):  # type: ignore[misc]  # Celery is untyped: its Consumer is Any to mypy
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        super().on_decode_error(message, exc)
        fail_job_of(message, f"bad message: cannot decode it ({type(exc).__name__}: {exc})")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        super().on_unknown_message(body, message)
        fail_job_of(message, "bad message: not a task message")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        super().on_unknown_task(body, message, exc)
        fail_job_of(message, f"bad message: unknown task {(message.headers or {}).get('task')!r}")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        super().on_invalid_task(body, message, exc)
        fail_job_of(message, f"bad message: {exc}")


def fail_job_of(message: Any, reason: str) -> None:
    from worker import context

    headers = getattr(message, "headers", None) or {}
    job_id = headers.get("id") if isinstance(headers, dict) else None
    try:
        why_not = context.get().store.fail_if_waiting(job_id, reason) if isinstance(job_id, str) else "missing"
        if why_not is None:
            log.error("job %s failed: %s", job_id, reason)
        else:
            log.error("dropped a message for a job that is %s: %s", why_not, reason)
    except Exception as e:  # a poisoned message must never take the worker down
        log.error("could not record a poisoned message (%s): %s", reason, e)
