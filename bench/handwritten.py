"""The yardstick: the Celery task a user would write instead of tensorq, on the same Redis.

    @app.task
    def op(name, a, b): return OPS[name](torch.tensor(a), torch.tensor(b)).tolist()

with the result in Celery's Redis result backend, JSON only, one job at a time per worker (like tensorq), on
kombu's own Redis transport (named outright: the benchmark process also runs tensorq's client, which
installs tensorq's transport for `redis://` in that process).
"""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("handwritten", broker=BROKER, backend=BROKER)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_prefetch_multiplier=1, task_acks_late=True, worker_send_task_events=True,
                task_send_sent_event=True, broker_connection_retry_on_startup=True, result_expires=3600,
                broker_transport="kombu.transport.redis:Transport")


@app.task(name="handwritten.op")
def op(name: str, a: list, b: list) -> list:
    import torch

    fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "matmul": torch.matmul}[name]
    return fn(torch.tensor(a), torch.tensor(b)).tolist()
