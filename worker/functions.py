"""A user's job function on a worker: the context it is called with (`ctx`: params, seed, device, report,
checkpoint, restore, Stop) and the runner that gives it the built-in training job's machinery: the lease,
fenced metric series with each step once across a resume, checkpoints any worker can read, cancel, timeouts
and hand-backs.

    def regress(ctx):
        saved = ctx.restore()                  # None on a fresh start, else (step, state)
        ...
        ctx.report(step, loss=loss)            # batched; raises ctx.Stop when the job must stop
        ctx.checkpoint(step + 1, {"model": model.state_dict(), "opt": opt.state_dict()})
        return {"final_loss": loss.item()}
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from shared import __version__, defaults, functions
from shared.errors import BadInput, Interrupted, JobFailed
from shared.metric_names import higher_is_better
from shared.series import check_name
from shared.specs import RunSpec
from shared.streamed import Blob
from shared.tensors import safetensors_metadata
from shared.vocab import StopReason
from worker import cpu_share, tensor_blobs
from worker.context import WorkerContext
from worker.devices import describe_torch_device
from worker.streams import Streams

# (metric name, first step, stride, values) -> False when the job was taken over (nothing was written)
Sink = Callable[[str, int, int, np.ndarray], bool]
Tracked = tuple[float, int, float]  # (best, its step (-1: none yet), last)


class Stop(BaseException):  # noqa: N818  # the contract's name: `except ctx.Stop`
    """Raised by `ctx.report` when the job must stop (cancelled, timed out, handed back, taken over). A
    BaseException, so a function's own `except Exception` does not swallow it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Series:
    """One metric's points reported since the last flush, and its best and last value so far."""

    name: str
    steps: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)  # floats, or 0-d tensors (on a GPU: read at the flush)
    tracked: Tracked = (math.nan, -1, math.nan)

    def flush(self, sink: Sink) -> bool:
        if not self.steps:
            return True
        values, steps = _host(self.values), np.asarray(self.steps, dtype=np.int64)
        self.steps, self.values = [], []
        self._track(steps, values)
        i, n = 0, len(steps)
        while i < n:  # a stream entry holds evenly spaced steps: one per run of a stride
            stride = int(steps[i + 1] - steps[i]) if i + 1 < n else 1
            j = i
            if stride >= 1:
                while j + 1 < n and steps[j + 1] - steps[j] == stride:
                    j += 1
            else:  # a step at or before the one before it: a point of its own
                stride = 1
            if not sink(self.name, int(steps[i]), stride, values[i:j + 1]):
                return False
            i = j + 1
        return True

    def _track(self, steps: np.ndarray, values: np.ndarray) -> None:
        sign = -1.0 if higher_is_better(self.name) else 1.0
        best, at, _ = self.tracked
        finite = np.isfinite(values)
        if finite.any():
            k = int(np.argmin(np.where(finite, sign * values, np.inf)))
            if at < 0 or sign * float(values[k]) < sign * best:
                best, at = float(values[k]), int(steps[k])
        self.tracked = (best, at, float(values[-1]))


def _host(values: list[Any]) -> np.ndarray:
    """The batch on the host: one copy (one device sync) for tensors; float32 kept as float32, else float64."""
    first = values[0]
    if isinstance(first, torch.Tensor) and all(isinstance(v, torch.Tensor) and v.dtype == first.dtype
                                               and v.device == first.device and v.dim() == 0 for v in values):
        with torch.no_grad():  # the usual case, one stack: 0.6 us a value where one copy each cost 5.6
            stacked = torch.stack(values)
        wide = torch.float64 if first.dtype == torch.float64 else torch.float32
        return stacked.to(wide).cpu().numpy()
    if any(isinstance(v, torch.Tensor) for v in values):
        tensors = [v.detach().reshape(()) if isinstance(v, torch.Tensor) else torch.tensor(float(v)) for v in values]
        stacked = torch.stack([t.to(tensors[0].device, torch.float64 if t.dtype == torch.float64 else torch.float32)
                               for t in tensors]).cpu()
        return stacked.numpy()
    return np.asarray(values, dtype=np.float64)


class JobContext:
    """What a job function is called with. Everything a function needs is here: it imports nothing of tensorq."""

    Stop = Stop

    def __init__(self, job_id: str, params: Mapping[str, Any], seed: int, device: torch.device, sink: Sink,
                 stop: Callable[[], str | None] = lambda: None, saved: bytes | bytearray | None = None,
                 save_checkpoint: Callable[[Blob], bool] | None = None,
                 on_progress: Callable[[int, int | None], None] = lambda done, total: None,
                 flush_reports: int = defaults.LOSS_FLUSH_ITERATIONS,
                 flush_interval_s: float = defaults.LOSS_FLUSH_INTERVAL_S,
                 positions: Callable[[], Mapping[str, str]] = dict) -> None:
        """`positions`: where each series stands in the store (its last entry), kept in a checkpoint so a resume
        trims back to it."""
        self._positions = positions
        self.job_id, self.params, self.seed, self.device = job_id, dict(params), seed, device
        self.total: int | None = None  # set it to the steps the run will take: `tensorq workers` shows i/N
        self._sink, self._stop, self._saved, self._save = sink, stop, saved, save_checkpoint
        self._on_progress, self._flush_reports, self._flush_interval_s = on_progress, flush_reports, flush_interval_s
        self._series: dict[str, Series] = {}
        self._pending, self._flushed_at = 0, time.perf_counter()
        self.last_step: int | None = None
        self.started_at = time.perf_counter()
        self.seconds_before = 0.0  # training time of earlier attempts (from the checkpoint)
        self.restored_step: int | None = None
        if saved is not None:
            meta = _meta(saved)
            self.seconds_before = float(meta.get("seconds", 0.0))
            for name, (best, at, last) in meta.get("tracked", {}).items():
                self._series[name] = Series(name, tracked=(best, at, last))

    # --- the contract -------------------------------------------------------------------------------------

    def report(self, step: int, **metrics: Any) -> None:
        """Record each metric's value at `step` (floats or 0-d tensors), batched: no round trip and no device
        sync per call. Raises ctx.Stop when the job must stop."""
        if (reason := self._stop()) is not None:
            self._stopping(reason)
        for name, value in metrics.items():
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = Series(check_name(name))
            series.steps.append(step)
            series.values.append(value)
        self.last_step = step
        self._pending += 1
        if self._pending >= self._flush_reports or time.perf_counter() - self._flushed_at >= self._flush_interval_s:
            self.flush()
            self._on_progress(step + 1, self.total)

    def should_stop(self) -> bool:
        return self._stop() is not None

    def checkpoint(self, step: int, state: Any) -> None:
        """Keep `state` (nested dicts and lists of tensors and JSON values), with torch's RNG state, as the point
        a resumed job starts from: `restore()` then returns (step, state). Every report before it is flushed
        first, so a resume keeps exactly the steps reported before the checkpoint."""
        if self._save is None:
            return
        self.flush()
        tensors: dict[str, torch.Tensor] = {}
        skeleton = _skeleton(state, tensors, "state")
        tensors["__rng__"] = torch.get_rng_state()
        meta = {"step": step, "skeleton": skeleton, "seconds": self.seconds, "tracked": self._tracked(),
                "series": dict(self._positions())}  # every report before it is flushed: its series end here
        if not self._save(tensor_blobs.blob(tensors, metadata={"run": json.dumps(meta)})):  # streamed, never whole
            self._stopping(StopReason.LEASE_LOST.value)

    def restore(self) -> tuple[int, Any] | None:
        """None on a fresh start; else (step, state) of the last checkpoint, tensors on ctx.device, and torch's
        RNG state as it was when the checkpoint was taken."""
        if self._saved is None:
            return None
        tensors, _ = tensor_blobs.load(self._saved)  # over the read buffer: no copy
        meta = _meta(self._saved)
        torch.set_rng_state(tensors.pop("__rng__"))
        self.restored_step = int(meta["step"])
        return self.restored_step, _rebuilt(meta["skeleton"], tensors, self.device)

    # --- for the runner -----------------------------------------------------------------------------------

    def flush(self) -> None:
        for series in self._series.values():
            if not series.flush(self._sink):
                self._stopping(StopReason.LEASE_LOST.value)
        self._pending, self._flushed_at = 0, time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started_at

    def _tracked(self) -> dict[str, Tracked]:
        return {name: s.tracked for name, s in self._series.items()}

    def summary_metrics(self) -> dict[str, dict[str, Any]]:
        return {name: {"last": last, "best": best if at >= 0 else None, "best_iteration": at if at >= 0 else None}
                for name, (best, at, last) in self._tracked().items()}

    def _stopping(self, reason: str) -> None:
        if StopReason.of(reason) is not StopReason.LEASE_LOST:  # a job taken over is no longer ours to write
            for series in self._series.values():
                series.flush(self._sink)
        raise Stop(reason)


def _meta(blob: bytes | bytearray) -> dict[str, Any]:
    return json.loads(safetensors_metadata(blob)["run"])  # type: ignore[no-any-return]


def _skeleton(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """`value` as JSON, each tensor replaced by {"__tensor__": key} (its bytes go to safetensors, never to a
    pickle). Dicts keep their keys' types (an optimizer's state is keyed by int) as pairs."""
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach()  # copied to the host (from a GPU) only as it is written, one at a time
        return {"__tensor__": key}
    if isinstance(value, Mapping):
        return {"__dict__": [[_key(k, where), _skeleton(v, tensors, f"{where}[{k!r}]")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_skeleton(v, tensors, f"{where}[{k}]") for k, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    raise BadInput(f"ctx.checkpoint: cannot keep the {type(value).__name__} at {where} (tensors, numbers, strings, "
                   "None, lists, tuples and dicts only: nothing is pickled)")


def _key(key: Any, where: str) -> Any:
    if key is None or isinstance(key, (bool, int, float, str)):
        return key
    raise BadInput(f"ctx.checkpoint: cannot keep the key {key!r} in {where} (numbers and strings only)")


def _rebuilt(value: Any, tensors: Mapping[str, torch.Tensor], device: torch.device) -> Any:
    if isinstance(value, list):
        return [_rebuilt(v, tensors, device) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]].to(device)
        if "__dict__" in value:
            return {k: _rebuilt(v, tensors, device) for k, v in value["__dict__"]}
        if "__tuple__" in value:
            return tuple(_rebuilt(v, tensors, device) for v in value["__tuple__"])
        if "__float__" in value:
            return float(value["__float__"])
    return value


# --- the runner --------------------------------------------------------------------------------------------

def execute_run(job_id: str, spec: RunSpec, device: torch.device, ctx: WorkerContext
                ) -> tuple[dict[str, Any], dict[str, Blob]]:
    """Run the job function `spec.function` of this worker's environment, from its checkpoint if it has one."""
    try:
        fn = functions.load(spec.function)
        params = functions.checked_params(fn, spec.params, spec.function)
    except BadInput as e:
        raise JobFailed(str(e)) from None
    saved = ctx.store.blobs.get_checkpoint(job_id)
    meta = _meta(saved) if saved else {}
    streams = Streams(ctx, job_id, meta.get("series"))
    deadline = time.monotonic() + spec.timeout - float(meta.get("seconds", 0.0)) if spec.timeout else None

    pace = cpu_share.steering(device)  # a function's own torch.set_num_threads stops it

    def stop() -> str | None:  # asked at each report
        pace()
        if deadline is not None and time.monotonic() > deadline:
            return f"{StopReason.TIMED_OUT} after {spec.timeout:g} s"
        reason = ctx.stop_reason()
        return reason.value if reason else None

    def save_checkpoint(blob: Blob) -> bool:
        return ctx.store.blobs.put_checkpoint(job_id, blob, streams.holder)

    def progress(done: int, total: int | None) -> None:
        if total:
            ctx.progress = (done, total)

    run = JobContext(job_id, params, spec.seed or 0, device, streams.append, stop, saved, save_checkpoint, progress,
                     positions=lambda: streams.positions)
    torch.manual_seed(spec.seed or 0)  # before the call: ctx.restore() then puts a checkpoint's RNG state back
    try:
        try:
            returned = fn(run)
        except Exception:
            run.flush()  # what it reported before it raised stays in its history; the error ends it `failed`
            raise
        run.flush()
        if (reason := stop()) is not None and StopReason.of(reason) is not StopReason.HANDBACK:
            raise Stop(reason)  # a function that never reports is stopped when it returns
    except Stop as e:
        stopped = Interrupted(_next_step(run), e.reason)
        if StopReason.of(e.reason).keeps_what_it_made:
            stopped.summary = summary_of(spec, device, ctx, run, {})
        raise stopped from None
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return summary_of(spec, device, ctx, run, _plain_object(returned, spec.function)), {}


def _next_step(run: JobContext) -> int:
    return run.last_step + 1 if run.last_step is not None else (run.restored_step or 0)


def summary_of(spec: RunSpec, device: torch.device, ctx: WorkerContext, run: JobContext,
               returned: dict[str, Any]) -> dict[str, Any]:
    """What the function returned, then what tensorq adds (its keys win: `metrics`, `steps`, ...)."""
    return {**returned, "function": spec.function, "steps": _next_step(run), "metrics": run.summary_metrics(),
            "seconds": round(run.seconds, 6), "resumed_from": run.restored_step,
            "device": describe_torch_device(device), "worker": ctx.node, "torch": torch.__version__,
            "cuda": torch.version.cuda, "tensorq": __version__, "python": platform.python_version()}


def _plain_object(returned: Any, name: str) -> dict[str, Any]:
    """A function's return value as the JSON object a summary is: 0-d tensors and numpy numbers become numbers."""
    if returned is None:
        return {}
    if not isinstance(returned, Mapping):
        raise JobFailed(f"job function {name!r} returned a {type(returned).__name__}, not a dict (the job's summary)")

    def plain(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            return v.item()
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    result = {str(k): plain(v) for k, v in returned.items()}
    try:
        json.dumps(result)
    except (TypeError, ValueError) as e:
        raise JobFailed(f"job function {name!r} returned a summary JSON cannot hold: {e}") from None
    return result
