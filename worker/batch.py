"""A batch message: many small op jobs, run one after another, with their results written together.

Each op is still a job of its own (record, state, result); what is shared is the message and the Redis
round trips: one to read the states, one to mark them running, one to store every result."""

from __future__ import annotations

import logging
from typing import Any

from shared.errors import JobFailed
from shared.protocol import Kind
from shared.store import Ending, JobState
from worker import context
from worker.jobs import decode, execute_op, readable, resolve_device

log = logging.getLogger(__name__)


def run_batch(batch_id: str, node: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    ctx = context.get(node)
    items = kwargs.get("jobs")
    if args or set(kwargs) != {"jobs"} or not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
        raise JobFailed(f"bad batch message {batch_id}: expected jobs=[{{id, spec}}, ...]")
    states = ctx.store.states([i["id"] for i in items])
    todo = [i for i, state in zip(items, states, strict=True) if state is None or not state.finished]
    endings = []
    started = False
    for item in todo:
        job_id = item["id"]
        ctx.current_job = job_id
        try:
            spec = decode((), {"spec": item.get("spec")}, Kind.OP.value)
            device = resolve_device(spec.device)
            if not started:
                ctx.store.mark_running_many([i["id"] for i in todo], ctx.node, str(device))
                started = True
            summary, artifacts = execute_op(job_id, spec, device, ctx)
            endings.append(Ending(job_id, JobState.SUCCEEDED, summary=summary, artifacts=artifacts))
        except Exception as e:
            log.error("job %s failed: %s", job_id, readable(e))
            endings.append(Ending(job_id, JobState.FAILED, error=readable(e)))
        finally:
            ctx.current_job = None
            ctx.jobs_done += 1
    ctx.store.mark_finished_many(endings)
    failed = sum(e.state == JobState.FAILED for e in endings)
    return {"ops": len(items), "ran": len(endings), "failed": failed, "skipped": len(items) - len(todo)}
