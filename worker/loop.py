"""The training loop, as nanoGPT would write it: one flat loop, its blocks labelled, no hidden device sync.
It records the metric series of `METRICS` (today the loss alone) through worker/recorders.py, checkpoints,
and stops when asked or when the loss diverges. Nothing here knows about Celery or Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from shared.errors import Interrupted
from shared.series import LOSS
from shared.specs import TrainSpec
from shared.vocab import Grad, StopReason, TrainDtype
from worker.fastpath import fast_step
from worker.network import Data, activate, draw, loss_value, manual_grads, tf32
from worker.recorders import Recorder, Sink

# A metric measured apart from the step: (spec, data, w1, w2) -> a 0-d tensor on the device, run without
# autograd on the weights the iteration starts from.
Measure = Callable[[TrainSpec, Data, torch.Tensor, torch.Tensor], torch.Tensor]


def every_iteration(spec: TrainSpec) -> int:
    return 1


@dataclass(frozen=True)
class Metric:
    """A series the loop records: one entry here plus its `measure` is all a new metric takes."""

    name: str
    measure: Measure | None = None  # None: the training step's own output (the loss)
    every: Callable[[TrainSpec], int] = every_iteration  # measured at the iterations divisible by this
    stops_on_nonfinite: bool = False  # an inf or nan ends the run `diverged` (unless spec.allow_nonfinite)


METRICS: tuple[Metric, ...] = (
    Metric(LOSS, stops_on_nonfinite=True),
)


@dataclass
class Resume:
    """Where a run stands: what a checkpoint holds, and what a resumed run starts from."""

    iteration: int  # the first iteration still to run; every value measured before it is in the history
    w1: torch.Tensor
    w2: torch.Tensor
    best_loss: float = float("inf")
    best_iteration: int = -1
    last_loss: float = float("nan")
    seconds: float = 0.0  # time spent training before this point, over every attempt


@dataclass
class TrainResult:
    w1: torch.Tensor
    w2: torch.Tensor
    final_loss: float
    best_loss: float  # over finite losses only; inf (best_iteration -1) when there was none
    best_iteration: int
    seconds: float
    recorded: int = 0  # iterations whose loss is in the history (the spec's iterations for a full run)
    weights_at: int = 0  # w1, w2 are the weights iteration `weights_at` starts from (after that many updates)


class Stopped(Interrupted):
    """Raised by `train` when it stops early (asked to, or diverged); `result` is where the run stood, with the
    weights of its last iteration. The worker adds the `summary` and `artifacts` the job keeps."""

    def __init__(self, iteration: int, reason: str, result: TrainResult) -> None:
        super().__init__(iteration, reason)
        self.result = result


def _discard(name: str, first: int, step: int, values: torch.Tensor) -> None:
    pass


def train(spec: TrainSpec, device: torch.device, sink: Sink | None, flush_iterations: int = 1000,
          flush_interval_s: float = 0.5, should_stop: Callable[[], str | None] = lambda: None,
          resume: Resume | None = None, checkpoint: Callable[[Resume], None] | None = None,
          checkpoint_every: int | None = None, checkpoint_interval_s: float = 30.0,
          metrics: tuple[Metric, ...] = METRICS) -> TrainResult:
    """Run the loop (from `resume` when given); each metric's values reach `sink` in batches, one host sync
    per batch (`sink=None` records nothing: the benchmark's "recording off").

    `checkpoint` is handed a Resume every `checkpoint_every` iterations (else every `checkpoint_interval_s`),
    always right after a flush, so the history holds exactly the iterations before it. `should_stop` is
    asked once per iteration (plain Python, no sync); a reason (shared.vocab.StopReason) raises Stopped,
    after a flush (unless the lease was lost) and, for a hand-back, a checkpoint.

    A non-finite loss (unless `spec.allow_nonfinite`) raises Stopped("diverged: loss became nan", N) with
    the history ending at iteration N. On the CPU that is right after iteration N (its update applied, so
    the weights are those iteration N + 1 would start from); on a GPU it is noticed at the next flush (up
    to `flush_iterations` or `flush_interval_s` later), whose later losses are dropped, and the weights are
    those at that flush. Either way `TrainResult.weights_at` says which.
    """
    with tf32(spec.tf32, device):  # the process-wide flag, for this run only
        data = draw(spec, device)
        w1, w2, lr = data.w1, data.w2, spec.lr
        start = resume or Resume(0, w1, w2)
        if resume is not None:
            w1 = resume.w1.to(device=device, dtype=w1.dtype)
            w2 = resume.w2.to(device=device, dtype=w2.dtype)
        autograd = spec.grad == Grad.AUTOGRAD
        if autograd:
            w1.requires_grad_()
            w2.requires_grad_()

        # one recorder per metric; bfloat16 values widen exactly into float32
        dtype = torch.float64 if spec.dtype == TrainDtype.FLOAT64 else torch.float32
        size = min(flush_iterations, spec.iterations)

        def recorder(m: Metric) -> Recorder:
            every = m.every(spec)
            first = -(-start.iteration // every) * every  # its first iteration at or after the start
            held = size if every == 1 else size // every + 1  # the most it measures between two flushes
            return Recorder.for_device(m.name, sink or _discard, held, dtype, device, first, every,
                                       m.stops_on_nonfinite and not spec.allow_nonfinite)

        (stepped,) = [m for m in metrics if m.measure is None]  # the one the step itself produces
        losses = recorder(stepped).carry(start.best_loss, start.best_iteration, start.last_loss)
        measured = [(m.measure, m.every(spec), recorder(m)) for m in metrics if m.measure is not None and sink]
        recorders = [losses, *(r for _, _, r in measured)]

        fast = fast_step(spec, data, w1, w2, device)
        t0 = last_flush = last_ckpt = time.perf_counter()

        def result(weights_at: int) -> TrainResult:
            return TrainResult(w1.detach(), w2.detach(), losses.last, losses.best, losses.best_at,
                               start.seconds + time.perf_counter() - t0, losses.first, weights_at)

        def flush(weights_at: int) -> None:
            """Hand every batch over; stop here if one held the first non-finite value."""
            for r in recorders:
                r.flush()
                if r.diverged is not None:
                    at, value = r.diverged
                    raise Stopped(at, f"{StopReason.DIVERGED}: {r.name} became {value}", result(weights_at))

        def snapshot(t: int) -> Resume:
            flush(t)
            return Resume(t, w1.detach(), w2.detach(), losses.best, losses.best_at, losses.last,
                          start.seconds + time.perf_counter() - t0)

        for t in range(start.iteration, spec.iterations):
            # stop when asked, checkpoint when due
            if reason := should_stop():
                stop = StopReason.of(reason)
                if stop is StopReason.HANDBACK and checkpoint is not None:
                    checkpoint(snapshot(t))  # to resume from elsewhere
                if stop is not StopReason.LEASE_LOST:  # a job taken over is no longer ours to write
                    flush(t)
                raise Stopped(t, reason, result(t))
            if checkpoint is not None and t > start.iteration:
                now = time.perf_counter()
                due = t % checkpoint_every == 0 if checkpoint_every else now - last_ckpt >= checkpoint_interval_s
                if due:
                    checkpoint(snapshot(t))
                    last_ckpt = last_flush = now

            # measure the other metrics, each at its own iterations, on the weights this iteration starts from
            for measure, every, r in measured:
                if t % every == 0:
                    with torch.no_grad():
                        full = r.record(measure(spec, data, w1, w2))
                    if full:
                        flush(t)

            # forward, backward, update
            if fast is not None:
                loss = fast()
            elif autograd:
                y_pred = activate(data.x.mm(w1), spec.activation).mm(w2)
                loss = loss_value(y_pred, data, spec.loss)
                loss.backward()  # type: ignore[no-untyped-call]
                with torch.no_grad():  # .grad was set by the backward just run
                    w1 -= lr * w1.grad  # type: ignore[operator]
                    w2 -= lr * w2.grad  # type: ignore[operator]
                    w1.grad.zero_()  # type: ignore[union-attr]
                    w2.grad.zero_()  # type: ignore[union-attr]
            else:
                loss, dw1, dw2 = manual_grads(data, w1, w2, spec.activation, spec.loss)
                w1 -= lr * dw1
                w2 -= lr * dw2

            # record the loss on the device; flush a batch to the host now and then (and at once on the
            # CPU when the loss is not finite)
            if sink is None:
                continue
            flush_now = losses.record(loss)
            now = time.perf_counter()
            if flush_now or t == spec.iterations - 1 or now - last_flush >= flush_interval_s:
                flush(t + 1)
                last_flush = now

    return result(spec.iterations)
