"""Running one job around a pure function: mark it running, run it, store what it made, mark how it ended."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from celery.exceptions import Reject

from shared.errors import Interrupted, JobFailed, TensorqError
from shared.protocol import JobState
from shared.specs import TensorOpSpec, TrainSpec, parse_spec
from worker import context

log = logging.getLogger(__name__)
Execute = Callable[[str, Any, Any, context.WorkerContext], dict[str, Any]]


def run_job(job_id: str, node: str, raw_spec: object, kind: str, execute: Execute) -> dict[str, Any]:
    """Run `execute(job_id, spec, device, ctx)`; any failure ends the job `failed` with a readable message."""
    ctx = context.get(node)
    state = ctx.store.state(job_id)
    if state is not None and state.finished:
        log.warning("job %s is already %s; dropping the redelivered message", job_id, state.value)
        return {"skipped": f"already {state.value}"}
    ctx.current_job, ctx.progress = job_id, None
    try:
        spec = parse_spec(raw_spec)
        if spec.kind != kind:
            raise JobFailed(f"a {spec.kind} spec was sent to the {kind} task")
        device = resolve_device(spec.device)
        ctx.store.mark_running(job_id, ctx.node, str(device))
        summary = execute(job_id, spec, device, ctx)
    except Interrupted as e:
        log.warning("job %s handed back to queue %s at iteration %d", job_id, ctx.queues, e.iteration)
        ctx.store.mark_requeued(job_id)
        raise Reject("handed back by a stopping worker", requeue=True) from None
    except Exception as e:
        message = readable(e)
        log.error("job %s failed: %s", job_id, message)
        ctx.store.mark_finished(job_id, JobState.FAILED, error=message)
        raise JobFailed(message) from None
    finally:
        ctx.current_job, ctx.progress = None, None
        ctx.jobs_done += 1
    ctx.store.mark_finished(job_id, JobState.SUCCEEDED, summary=summary)
    return summary


def resolve_device(requested: str):
    """auto -> this worker's GPU when it has one, else the CPU; cuda on a worker without one fails."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise JobFailed("the job asks for cuda but this worker has no CUDA device")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", 0)  # the launcher pins each worker process to one GPU


def readable(e: BaseException) -> str:
    """One line a user can act on; torch's multi-line errors are cut to their first line."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if isinstance(e, TensorqError) else f"{type(e).__name__}: {text}"


def execute_train(job_id: str, spec: TrainSpec, device, ctx: context.WorkerContext) -> dict[str, Any]:
    import torch
    from safetensors.torch import save

    from shared import defaults
    from worker import mlp
    from worker.devices import describe_torch_device

    def sink(first: int, losses: torch.Tensor) -> None:
        ctx.store.append_losses(job_id, first, losses.numpy())
        ctx.progress = (first + len(losses), spec.iterations)  # the heartbeat reports it

    result = mlp.train(spec, device, sink, defaults.LOSS_FLUSH_ITERATIONS, defaults.LOSS_FLUSH_INTERVAL_S,
                       should_stop=lambda: ctx.handback)
    # bfloat16 widens exactly to float32, which numpy (and so every client) can read
    weights = {n: (w.float() if w.dtype == torch.bfloat16 else w).cpu().contiguous()
               for n, w in (("w1", result.w1), ("w2", result.w2))}
    ctx.store.put_artifact(job_id, "weights", save(weights, metadata={"job": job_id, "spec": spec.model_dump_json()}))
    return {
        "final_loss": result.final_loss,
        "best_loss": result.best_loss,
        "best_iteration": result.best_iteration,
        "iterations": spec.iterations,
        "seconds": round(result.seconds, 6),
        "iterations_per_s": round(spec.iterations / result.seconds, 2) if result.seconds > 0 else None,
        "device": describe_torch_device(device),
        "worker": ctx.node,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def execute_op(job_id: str, spec: TensorOpSpec, device, ctx: context.WorkerContext) -> dict[str, Any]:
    import torch

    from shared.tensors import safetensors_bytes
    from worker import ops
    from worker.devices import describe_torch_device

    t0 = time.perf_counter()
    result, used = ops.run(spec, device)
    seconds = time.perf_counter() - t0
    array: np.ndarray = ops.to_numpy(result)
    ctx.store.put_artifact(job_id, "result", safetensors_bytes({"result": array}))
    return {"op": spec.op, "shape": list(array.shape), "dtype": str(result.dtype).removeprefix("torch."),
            "seconds": round(seconds, 6), "device": describe_torch_device(used), "worker": ctx.node,
            "torch": torch.__version__}
