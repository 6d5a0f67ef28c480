"""A training job on a worker: resume from its checkpoint, run the loop with losses streamed to the store,
checkpoint as it goes, stop when told, store the weights and the summary, give the GPU memory back."""

from __future__ import annotations

import json
import logging
import platform
import time
from typing import Any

import torch
from safetensors.torch import load, save

from shared import __version__, defaults
from shared.errors import JobFailed
from shared.specs import TrainSpec
from shared.tensors import safetensors_metadata
from worker import mlp
from worker.context import WorkerContext
from worker.devices import describe_torch_device

log = logging.getLogger(__name__)


def execute_train(job_id: str, spec: TrainSpec, device: torch.device, ctx: WorkerContext
                  ) -> tuple[dict[str, Any], dict[str, bytes]]:
    check_fits(spec, device)
    resume = load_checkpoint(ctx, job_id)
    # the history holds exactly the iterations before the resume point (all of it goes on a fresh start)
    ctx.store.trim_losses_after(job_id, resume.stream_id if resume else None)
    deadline = time.monotonic() + spec.timeout - (resume.state.seconds if resume else 0.0) if spec.timeout else None

    def sink(first: int, losses: torch.Tensor) -> None:
        if not ctx.store.append_losses(job_id, first, losses.numpy(), ctx.lease_holder):
            ctx.lease_lost = True  # taken over: the loop stops at its next iteration, writing nothing more
        ctx.progress = (first + len(losses), spec.iterations)  # the heartbeat reports it

    def should_stop() -> str | None:
        if deadline is not None and time.monotonic() > deadline:
            return f"timed out after {spec.timeout:g} s"
        return ctx.stop_reason()

    try:
        result = mlp.train(spec, device, sink, defaults.LOSS_FLUSH_ITERATIONS, defaults.LOSS_FLUSH_INTERVAL_S,
                           should_stop=should_stop, resume=resume.state if resume else None,
                           checkpoint=lambda state: save_checkpoint(ctx, job_id, state),
                           checkpoint_every=spec.checkpoint_every,
                           checkpoint_interval_s=defaults.CHECKPOINT_INTERVAL_S)
        return ending(job_id, spec, device, ctx, result, resume)
    except mlp.Stopped as e:
        if e.reason not in KEEPS_NOTHING:  # cancelled, timed out, diverged: it keeps what it made so far
            e.summary, e.artifacts = ending(job_id, spec, device, ctx, e.result, resume)
        raise
    finally:
        release_gpu_memory(device, job_id)


# A job that stops for these keeps nothing: it is handed back (and resumes), or another worker has it.
KEEPS_NOTHING = ("handback", "lease lost")


def ending(job_id: str, spec: TrainSpec, device: torch.device, ctx: WorkerContext, result: mlp.TrainResult,
           resume: Checkpoint | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The summary and the weights artifact of a run that ended, fully or early. `weights_at` says which
    weights they are: those iteration `weights_at` starts from (the spec's iterations for a full run; the
    last iteration run for a cancelled, timed-out or diverged one, see mlp.train)."""
    # bfloat16 widens exactly to float32, which numpy (and so every client) can read
    weights = {n: (w.float() if w.dtype == torch.bfloat16 else w).cpu().contiguous()
               for n, w in (("w1", result.w1), ("w2", result.w2))}
    blob = save(weights, metadata={"job": job_id, "spec": spec.model_dump_json(),
                                   "weights_at": str(result.weights_at)})
    found = result.best_iteration >= 0  # no finite loss at all: no best
    summary = {
        "final_loss": result.final_loss,
        "best_loss": result.best_loss if found else None,
        "best_iteration": result.best_iteration if found else None,
        "iterations": result.recorded,  # iterations in the history: the spec's, unless it stopped early
        "weights_at": result.weights_at,
        "seconds": round(result.seconds, 6),
        "iterations_per_s": round(result.recorded / result.seconds, 2) if result.seconds > 0 else None,
        "resumed_from": resume.state.iteration if resume else None,
        "device": describe_torch_device(device),
        "worker": ctx.node,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tensorq": __version__,
        "python": platform.python_version(),
    }
    return summary, {"weights": blob}


class Checkpoint:
    def __init__(self, state: mlp.Resume, stream_id: str | None) -> None:
        self.state = state
        self.stream_id = stream_id  # the last history entry written before it


def save_checkpoint(ctx: WorkerContext, job_id: str, state: mlp.Resume) -> None:
    """Weights, RNG state, iteration and history position, in one safetensors blob."""
    meta = {"iteration": state.iteration, "best_loss": state.best_loss, "best_iteration": state.best_iteration,
            "last_loss": state.last_loss, "seconds": state.seconds, "stream_id": ctx.store.last_loss_id(job_id)}
    tensors = {"w1": state.w1.cpu().contiguous(), "w2": state.w2.cpu().contiguous(), "rng": torch.get_rng_state()}
    if not ctx.store.put_checkpoint(job_id, save(tensors, metadata={"state": json.dumps(meta)}), ctx.lease_holder):
        ctx.lease_lost = True


def load_checkpoint(ctx: WorkerContext, job_id: str) -> Checkpoint | None:
    blob = ctx.store.get_checkpoint(job_id)
    if blob is None:
        return None
    tensors = load(blob)
    meta = json.loads(safetensors_metadata(blob)["state"])
    torch.set_rng_state(tensors["rng"])
    log.info("job %s resumes from its checkpoint at iteration %d", job_id, meta["iteration"])
    state = mlp.Resume(meta["iteration"], tensors["w1"], tensors["w2"], meta["best_loss"], meta["best_iteration"],
                       meta["last_loss"], meta["seconds"])
    return Checkpoint(state, meta["stream_id"])


def check_fits(spec: TrainSpec, device: torch.device) -> None:
    """A GPU worker refuses a job its GPU's free memory cannot hold, naming both numbers."""
    if device.type != "cuda":
        return
    b, i, h, o = spec.batch_size, spec.input_size, spec.hidden_size, spec.output_size
    size = torch.tensor([], dtype=mlp.DTYPES[spec.dtype]).element_size()
    # x, y; w1, w2 and their gradients; activations and their gradients (a generous count)
    need = size * (b * i + b * o + 2 * (i * h + h * o) + 4 * b * h + 4 * b * o)
    free, _ = torch.cuda.mem_get_info(device)
    if need > free:
        raise JobFailed(f"needs about {need / 2**30:.2f} GiB of GPU memory; this GPU has {free / 2**30:.2f} GiB free")


def release_gpu_memory(device: torch.device, job_id: str) -> None:
    if device.type != "cuda":
        return
    before, _ = torch.cuda.mem_get_info(device)
    torch.cuda.empty_cache()
    after, total = torch.cuda.mem_get_info(device)
    log.info("job %s: GPU memory free %.2f GiB before release, %.2f GiB after (of %.2f GiB)", job_id,
             before / 2**30, after / 2**30, total / 2**30)
