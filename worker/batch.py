"""A batch message: many small op jobs, run one after another, their results committed together.

Each op is still a job of its own (record, state, result); what is shared is the message and the Redis
round trips: one to read the states, one (a pipeline of commit scripts) to store every result. As for a
single op, each commit keeps the first ending: an op cancelled meanwhile stays cancelled.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shared.errors import JobFailed
from shared.kinds import KINDS
from shared.store import Ending
from shared.streamed import whole
from shared.vocab import JobState, Kind
from worker import context
from worker.jobs import decode, readable, resolve_device

OPS = KINDS[Kind.OP]  # a batch carries op jobs only (shared/dispatch.send_batch)

log = logging.getLogger(__name__)


def run_batch(batch_id: str, node: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    ctx = context.get(node)
    items = kwargs.get("jobs")
    if args or set(kwargs) != {"jobs"} or not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
        raise JobFailed(f"bad batch message {batch_id}: expected jobs=[{{id, spec}}, ...]")
    execute = OPS.execute()
    states = ctx.store.states([i["id"] for i in items])
    todo = [i for i, state in zip(items, states, strict=True) if state is not None and not state.finished]
    done, failed = [], []
    for item in todo:
        job_id, started = item["id"], time.time()
        try:
            spec = decode((), {"spec": item.get("spec")}, OPS.kind.value)
            device = resolve_device(spec.device)
            summary, artifacts = execute(job_id, spec, device, ctx)
            done.append((job_id, ctx.node, str(device), started, summary, whole(artifacts[OPS.result])))
        except Exception as e:
            log.error("job %s failed: %s", job_id, readable(e))
            failed.append(Ending(job_id, JobState.FAILED, error=readable(e)))
        finally:
            ctx.jobs_done += 1
    outcomes = ctx.store.finish_ops(done) if done else []
    ctx.store.mark_finished_many(failed)
    dropped = sum(o != "ok" for o in outcomes)
    if len(todo) < len(items):
        log.warning("batch %s: %d ops had ended or have no record; skipped", batch_id, len(items) - len(todo))
    return {"ops": len(items), "succeeded": len(outcomes) - dropped, "failed": len(failed),
            "skipped": len(items) - len(todo) + dropped}
