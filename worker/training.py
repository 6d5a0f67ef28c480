"""A training job on a worker: resume from its checkpoint, run the loop with its metric series streamed to
the store, checkpoint as it goes, stop when told, store the weights and the summary, give the GPU memory
back."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from typing import Any

import torch

from shared import __version__, defaults
from shared.errors import JobFailed
from shared.metric_names import LOSS
from shared.specs import TrainSpec
from shared.streamed import Blob, Streamed
from shared.vocab import StopReason
from worker import cpu_share, dataset, loop, tensor_blobs
from worker.context import WorkerContext
from worker.devices import describe_torch_device
from worker.network import DTYPES
from worker.streams import Streams

log = logging.getLogger(__name__)


def execute_train(job_id: str, spec: TrainSpec, device: torch.device, ctx: WorkerContext
                  ) -> tuple[dict[str, Any], dict[str, Blob]]:
    check_fits(spec, device)
    arrays = dataset.fetch(ctx.store, spec.data) if spec.data else None  # once per job start
    resume = load_checkpoint(ctx, job_id)
    streams = Streams(ctx, job_id, resume.positions if resume else None)
    deadline = time.monotonic() + spec.timeout - (resume.state.seconds if resume else 0.0) if spec.timeout else None

    def sink(name: str, first: int, step: int, values: torch.Tensor) -> None:
        if streams.append(name, first, step, values.numpy()) and name == LOSS:
            ctx.progress = (first + len(values), spec.iterations)  # the heartbeat reports it

    pace = cpu_share.steering(device, exact=cpu_share.sums_stay_exact(spec.rows, spec.output_size))

    def should_stop() -> str | None:  # asked once per iteration
        pace()
        if deadline is not None and time.monotonic() > deadline:
            return f"{StopReason.TIMED_OUT} after {spec.timeout:g} s"
        return ctx.stop_reason()

    try:
        result = loop.train(spec, device, sink, defaults.LOSS_FLUSH_ITERATIONS, defaults.LOSS_FLUSH_INTERVAL_S,
                            should_stop=should_stop, resume=resume.state if resume else None,
                            checkpoint=lambda state: save_checkpoint(ctx, job_id, streams.holder, state,
                                                                     streams.positions),
                            checkpoint_every=spec.checkpoint_every,
                            checkpoint_interval_s=defaults.CHECKPOINT_INTERVAL_S, arrays=arrays)
        return ending(job_id, spec, device, ctx, result, resume)
    except loop.Stopped as e:
        if StopReason.of(e.reason).keeps_what_it_made:  # cancelled, timed out, diverged
            e.summary, e.artifacts = ending(job_id, spec, device, ctx, e.result, resume)
        raise
    finally:
        release_gpu_memory(device, job_id)


def ending(job_id: str, spec: TrainSpec, device: torch.device, ctx: WorkerContext, result: loop.TrainResult,
           resume: Checkpoint | None) -> tuple[dict[str, Any], dict[str, Blob]]:
    """The summary and the weights artifact of a run that ended, fully or early. `weights_at` says which
    weights they are: those iteration `weights_at` starts from (the spec's iterations for a full run; the
    last iteration run for a cancelled, timed-out or diverged one, see loop.train). The weights are streamed
    when stored: each copied to the host only when its turn comes."""
    # bfloat16 widens exactly to float32, which numpy (and so every client) can read (on the device: no host copy)
    weights = {n: w.float() if w.dtype == torch.bfloat16 else w for n, w in (("w1", result.w1), ("w2", result.w2))}
    blob = tensor_blobs.blob(weights, metadata={"job": job_id, "spec": spec.model_dump_json(),
                                                "weights_at": str(result.weights_at)})
    found = result.best_iteration >= 0  # no finite loss at all: no best
    summary: dict[str, Any] = {
        "final_loss": result.final_loss,
        "best_loss": result.best_loss if found else None,
        "best_iteration": result.best_iteration if found else None,
        "iterations": result.recorded,  # iterations in the history: the spec's, unless it stopped early
        "weights_at": result.weights_at,
        "seconds": round(result.seconds, 6),
        "iterations_per_s": round(result.recorded / result.seconds, 2) if result.seconds > 0 else None,
        "resumed_from": resume.state.iteration if resume else None,
        "metrics": {name: {"last": last, "best": best if at >= 0 else None, "best_iteration": at if at >= 0 else None}
                    for name, (best, at, last) in result.metrics.items()},
        "device": describe_torch_device(device),
        "worker": ctx.node,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tensorq": __version__,
        "python": platform.python_version(),
    }
    return summary, {"weights": blob}


@dataclass
class Checkpoint:
    """Where a run stood, where each of its series stood (the stream id of its last entry written before the
    checkpoint), and the RNG state: one safetensors blob, the rest in its metadata."""

    state: loop.Resume
    positions: dict[str, str]  # metric name -> stream id; a series not named had nothing yet
    rng: torch.Tensor

    def to_blob(self) -> Streamed:
        """The checkpoint as a safetensors blob streamed as it is written (the weights' own memory on a CPU; one
        host copy at a time from a GPU), never built whole."""
        s = self.state
        meta = {"iteration": s.iteration, "best_loss": s.best_loss, "best_iteration": s.best_iteration,
                "last_loss": s.last_loss, "seconds": s.seconds, "series": self.positions, "tracked": s.tracked,
                "stream_id": self.positions.get(LOSS)}  # what a worker from before named series reads
        return tensor_blobs.blob({"w1": s.w1, "w2": s.w2, "rng": self.rng}, metadata={"state": json.dumps(meta)})

    def to_bytes(self) -> bytes:
        return self.to_blob().joined()

    @classmethod
    def from_bytes(cls, blob: bytes | bytearray) -> Checkpoint:
        """The checkpoint a blob holds, its tensors over the blob's own buffer (no copy of a large one)."""
        tensors, metadata = tensor_blobs.load(blob)
        meta = json.loads(metadata["state"])
        # one written before there were named series holds the loss's position alone, as stream_id
        positions = meta["series"] if "series" in meta else {LOSS: meta["stream_id"]}
        tracked = {name: (best, at, last) for name, (best, at, last) in meta.get("tracked", {}).items()}
        state = loop.Resume(meta["iteration"], tensors["w1"], tensors["w2"], meta["best_loss"],
                            meta["best_iteration"], meta["last_loss"], meta["seconds"], tracked)
        return cls(state, {k: v for k, v in positions.items() if v is not None}, tensors["rng"])


def save_checkpoint(ctx: WorkerContext, job_id: str, holder: str, state: loop.Resume,
                    positions: dict[str, str]) -> None:
    """Weights, RNG state, iteration and each series' position, written only while the lease is ours."""
    blob = Checkpoint(state, dict(positions), torch.get_rng_state()).to_blob()
    if not ctx.store.blobs.put_checkpoint(job_id, blob, holder):
        ctx.lease_lost = True


def load_checkpoint(ctx: WorkerContext, job_id: str) -> Checkpoint | None:
    blob = ctx.store.blobs.get_checkpoint(job_id)
    if blob is None:
        return None
    checkpoint = Checkpoint.from_bytes(blob)
    torch.set_rng_state(checkpoint.rng)
    log.info("job %s resumes from its checkpoint at iteration %d", job_id, checkpoint.state.iteration)
    return checkpoint


def check_fits(spec: TrainSpec, device: torch.device) -> None:
    """A GPU worker refuses a job its GPU's free memory cannot hold, naming both numbers."""
    if device.type != "cuda":
        return
    b, i, h, o = spec.rows, spec.input_size, spec.hidden_size, spec.output_size
    size = torch.tensor([], dtype=DTYPES[spec.dtype]).element_size()
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
