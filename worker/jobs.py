"""Running one job around a pure function: take its lease, mark it running, run it, store what it made,
mark how it ended. (Batches end in worker/batch.py; poisoned messages in worker/consumer.py; jobs whose
worker died are re-sent by worker/reaper.py.)"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from celery.exceptions import Ignore, Reject

from shared import __version__
from shared.errors import Interrupted, JobFailed, TensorqError
from shared.kinds import JobKind
from shared.specs import AnySpec, TensorOpSpec, parse_spec
from shared.streamed import Blob, whole
from shared.vocab import Device, JobState, StopReason
from worker import context, outages

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
# A runner (a kind's `runner` in shared/kinds.py) returns the job's summary and its artifacts (name -> bytes, or a
# blob streamed as it is written: a training job's weights).
Execute = Callable[[str, Any, Any, context.WorkerContext], tuple[dict[str, Any], dict[str, Blob]]]
TASK_KWARGS = {"spec"}


def run_job(job_id: str, node: str, args: tuple[Any, ...], kwargs: dict[str, Any], entry: JobKind
            ) -> dict[str, Any] | str:
    """Run the kind's runner, `execute(job_id, spec, device, ctx)`, exactly once per job, whatever message
    brought it. A leased kind makes two round trips to Redis around the work: `begin` (lease, state) and
    `mark_finished` (all it made); a pure one, one (see run_pure)."""
    ctx = context.get(node)
    try:
        spec = decode(args, kwargs, entry.kind.value)
        device = resolve_device(spec.device)
        execute = entry.execute()  # the runner's imports (torch) load with the first job, not with the app
    except Exception as e:
        return fail_unless_taken(ctx, job_id, readable(e))
    if entry.pure:
        return run_pure(ctx, job_id, spec, device, entry, execute)
    holder = f"{ctx.node} {uuid.uuid4().hex}"
    outcome = ctx.store.begin(job_id, holder, ctx.node, str(device))
    if outcome == "leased":
        log.warning("job %s is running on %s; dropping this duplicate message", job_id, ctx.leases.holder(job_id))
        return {"skipped": "running elsewhere"}
    if outcome != "ok":
        log.warning("job %s is already %s; dropping the redelivered message", job_id, outcome)
        return already_ended(job_id, outcome)
    ctx.start_job(job_id, holder)
    try:  # a broker outage stops the attempt's writes; it goes on from its checkpoint while the lease is ours
        summary, artifacts = outages.through_outages(ctx, job_id, holder, lambda: execute(job_id, spec, device, ctx),
                                                     lambda: lost(job_id, ctx))
    except Interrupted as e:
        interrupted(ctx, job_id, holder, e)
    except Reject:
        raise
    except Exception as e:
        fail(ctx, job_id, readable(e), holder)
    finally:
        ctx.end_job()
    write_ending(ctx, job_id, holder, JobState.SUCCEEDED, summary=summary, artifacts=artifacts)
    return summary


def run_pure(ctx: context.WorkerContext, job_id: str, spec: Any, device: Any, entry: JobKind,
             execute: Execute) -> dict[str, Any] | str:
    """A pure job (an op) takes microseconds and has no side effects, so it runs first and commits after, in
    one round trip that keeps the first ending: a cancelled or already finished job is left as it was."""
    started = time.time()
    try:
        summary, artifacts = execute(job_id, spec, device, ctx)
    except Exception as e:
        return fail_unless_taken(ctx, job_id, readable(e))
    finally:
        ctx.jobs_done += 1
    outcome = ctx.store.finish_op(job_id, ctx.node, str(device), started, summary, whole(artifacts[entry.result]))
    if outcome != "ok":
        log.warning("job %s was already %s; its result is dropped", job_id, outcome)
        return already_ended(job_id, outcome)
    return pure_outcome(entry, summary)


def already_ended(job_id: str, state: str) -> dict[str, Any]:
    """The task's ending for a message whose job had ended: a job cancelled while queued shows in Flower as
    revoked, as one cancelled while running does (not as a success with {'skipped': ...})."""
    if state == JobState.CANCELLED.value:
        announce_revoked(job_id)
        raise Ignore()
    return {"skipped": f"already {state}"}


def pure_outcome(entry: JobKind, summary: dict[str, Any]) -> str:
    """A pure job's task return value, which only Flower sees (the summary is in the store): one line. Celery
    reprs every return value for its task-succeeded event; returning the whole summary cost the worker about
    0.2 ms of CPU per tiny job (1.95 ms against 1.72 ms, docs/BENCHMARKS.md)."""
    return f"{entry.ended(summary)} on {summary.get('device')}"


def fail(ctx: context.WorkerContext, job_id: str, message: str, lease_holder: str | None = None) -> NoReturn:
    log.error("job %s failed: %s", job_id, message)
    write_ending(ctx, job_id, lease_holder, JobState.FAILED, error=message)
    raise JobFailed(message) from None


def fail_unless_taken(ctx: context.WorkerContext, job_id: str, message: str) -> dict[str, Any]:
    """A message this worker cannot run fails its job, unless the job has ended, runs elsewhere or has no
    record (then the message is a stray, dropped)."""
    why_not = ctx.store.fail_if_waiting(job_id, message)
    if why_not is None:
        log.error("job %s failed: %s", job_id, message)
        raise JobFailed(message) from None
    log.warning("job %s is %s; dropping a message this worker cannot run (%s)", job_id, why_not, message)
    return {"skipped": why_not}


def lost(job_id: str, ctx: context.WorkerContext | None = None) -> NoReturn:
    """Another worker took the job over (our lease lapsed): what this one made is dropped, unrecorded. Asked with
    `ctx`, a job found `queued` with nobody's lease puts its message back: after a failover, the new primary may
    never have seen the job begin (the message, in its unacknowledged set, would be dropped for good); if the
    reaper re-queued the job instead, the message is a second one, dropped by whichever worker gets it second."""
    if ctx is not None and ctx.store.state(job_id) == JobState.QUEUED:
        log.warning("job %s is queued again with no lease (a failover lost its start?): its message goes back", job_id)
        raise Reject("queued again", requeue=True) from None
    log.error("job %s: lease lost; another worker has it, so this attempt's ending is dropped", job_id)
    raise Reject("lease lost", requeue=False) from None


def interrupted(ctx: context.WorkerContext, job_id: str, holder: str, e: Interrupted) -> NoReturn:
    """A job stopped on request ends cancelled, failed (timeout, divergence), or goes back to its queue. An
    ending keeps what the executor made so far (a training job's weights and summary), when it made any."""
    reason = StopReason.of(e.reason)
    if reason is StopReason.CANCEL:
        log.warning("job %s cancelled at iteration %d", job_id, e.iteration)
        end_stopped(ctx, job_id, holder, e, JobState.CANCELLED, f"cancelled at iteration {e.iteration}")
        announce_revoked(job_id)
        # Not a failure: Ignore acknowledges the message and sends no task-failed event, so Flower shows the
        # task-revoked event just sent (REVOKED, no traceback), as it would for `celery revoke`.
        raise Ignore() from None
    if reason in (StopReason.TIMED_OUT, StopReason.DIVERGED):
        message = f"{e.reason} (at iteration {e.iteration})" if reason is StopReason.TIMED_OUT else str(e)
        log.error("job %s failed: %s", job_id, message)
        end_stopped(ctx, job_id, holder, e, JobState.FAILED, message)
        raise JobFailed(message) from None
    if reason is StopReason.LEASE_LOST:  # another worker runs it now: leave its state alone, drop this message
        lost(job_id)
    log.warning("job %s handed back to its queue at iteration %d (checkpointed)", job_id, e.iteration)
    ctx.handback = False  # one hand-back per signal: a worker that goes on serving runs its next job
    ctx.store.mark_requeued(job_id)
    ctx.leases.release(job_id, holder)
    raise Reject("handed back by a stopping worker", requeue=True) from None


def end_stopped(ctx: context.WorkerContext, job_id: str, holder: str, e: Interrupted, state: JobState,
                message: str) -> None:
    """Write how a stopped job ended (with what it made so far), waiting out a broker outage as `fail` does."""
    write_ending(ctx, job_id, holder, state, summary=e.summary, error=message, artifacts=e.artifacts)


def write_ending(ctx: context.WorkerContext, job_id: str, holder: str | None, state: JobState,
                 **ending: Any) -> None:
    """Store how a job ended (`mark_finished` under its lease), waiting out broker outages, then, where the
    primary has replicas, wait until one holds the ending before the message is acknowledged. If a failover came
    between and the new primary lacks it, it is written again (the lease there is still this worker's); if the
    lease is not, the job is another worker's now (`lost`)."""
    def ended() -> bool:  # so ended already: an ending whose reply an outage cut off was written all the same
        return ctx.store.state(job_id) == state

    def write() -> bool:
        before = ctx.store.replication.primary()
        if not ctx.store.mark_finished(job_id, state, lease_holder=holder, **ending):
            return ended()
        if ctx.store.replication.settle(before) or ended():
            return True
        return ctx.store.mark_finished(job_id, state, lease_holder=holder, **ending) or ended()

    if not outages.through_outages(ctx, job_id, holder, write, lambda: False):
        lost(job_id, ctx)


def announce_revoked(job_id: str) -> None:
    """Send Celery's task-revoked event for the running task (what a `celery revoke` would make Flower show)."""
    from celery import current_task

    try:
        if current_task and current_task.request.id == job_id:
            current_task.send_event("task-revoked", terminated=False, signum=None, expired=False)
    except Exception as err:  # monitoring only: the job's ending is already stored
        log.warning("job %s: could not send the task-revoked event (%s)", job_id, err)


def decode(args: tuple[Any, ...], kwargs: dict[str, Any], kind: str) -> AnySpec:
    """The spec from a task's keyword arguments; anything else in the message is a clear failure."""
    if args:
        raise JobFailed(f"bad message: {len(args)} positional arguments (tensorq sends only spec=...)")
    if set(kwargs) != TASK_KWARGS:
        unexpected = sorted(set(kwargs) - TASK_KWARGS)
        raise JobFailed(f"bad message: unexpected arguments {unexpected}" if unexpected
                        else "bad message: no spec")
    spec = parse_spec(kwargs["spec"])
    if spec.kind.value != kind:
        raise JobFailed(f"a {spec.kind} spec was sent to the {kind} task")
    return spec


def resolve_device(requested: str) -> torch.device:
    """auto -> this worker's GPU when it has one, else the CPU; cuda on a worker without one fails."""
    import torch

    has_cuda = _has_cuda()
    if requested == Device.CUDA and not has_cuda:
        raise JobFailed("the job asks for cuda but this worker has no CUDA device")
    if requested == Device.CPU or not has_cuda:
        return torch.device("cpu")
    return torch.device("cuda", 0)  # the launcher pins each worker process to one GPU


@functools.cache
def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()  # asked once per process: a worker's GPU does not come and go


def readable(e: BaseException) -> str:
    """One line a user can act on; torch's multi-line errors are cut to their first line."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if isinstance(e, TensorqError) else f"{type(e).__name__}: {text}"


def execute_op(job_id: str, spec: TensorOpSpec, device: torch.device, ctx: context.WorkerContext
               ) -> tuple[dict[str, Any], dict[str, Blob]]:
    import torch

    from shared.tensors import safetensors_bytes
    from worker import ops
    from worker.devices import describe_torch_device

    t0 = time.perf_counter()
    result, used = ops.run(spec, device)
    seconds = time.perf_counter() - t0
    array: np.ndarray = ops.to_numpy(result)
    summary = {"op": spec.op, "shape": list(array.shape), "dtype": str(result.dtype).removeprefix("torch."),
               "seconds": round(seconds, 6), "device": describe_torch_device(used), "worker": ctx.node,
               "torch": torch.__version__, "cuda": torch.version.cuda, "tensorq": __version__}
    return summary, {"result": safetensors_bytes({"result": array})}
