"""The training loop, as nanoGPT would write it: one flat loop, its blocks labelled, no hidden device sync.
It records the metric series of `METRICS` (today the loss alone) through worker/recorders.py, checkpoints,
and stops when asked or when the loss diverges. Nothing here knows about Celery or Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from shared.errors import Interrupted
from shared.metric_names import ACCURACY, LOSS, VAL_ACCURACY, VAL_LOSS, higher_is_better
from shared.specs import TrainSpec
from shared.vocab import Grad, StopReason, TrainDtype
from worker.fastpath import fast_step
from worker.network import Data, activate, draw, loss_value, manual_grads, tf32
from worker.recorders import Recorder, Sink


class Evaluation:
    """The weights an iteration starts from, run forward without autograd on the rows a metric asks for, each
    split at most once however many metrics read it."""

    def __init__(self, spec: TrainSpec, data: Data, w1: torch.Tensor, w2: torch.Tensor) -> None:
        self.spec, self.data, self.w1, self.w2 = spec, data, w1.detach(), w2.detach()

    @cached_property
    def train(self) -> torch.Tensor:
        return activate(self.data.x.mm(self.w1), self.spec.activation).mm(self.w2)

    @cached_property
    def val(self) -> torch.Tensor:
        assert self.data.val is not None  # measured only when rows are held out (TrainSpec.evaluated)
        return activate(self.data.val.x.mm(self.w1), self.spec.activation).mm(self.w2)


# A metric measured apart from the step: a 0-d tensor on the device, read from an Evaluation.
Measure = Callable[[Evaluation], torch.Tensor]


def _right(logits: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    assert target is not None  # a classifier's (TrainSpec.evaluated)
    return (logits.argmax(dim=1) == target).to(torch.float64).mean()


def _val_loss(e: Evaluation) -> torch.Tensor:
    assert e.data.val is not None
    return loss_value(e.val, Data(e.data.val.x, e.data.val.y, e.data.val.target, e.w1, e.w2), e.spec.loss)


def every_iteration(spec: TrainSpec) -> int:
    return 1


def every_evaluation(spec: TrainSpec) -> int:
    return spec.evaluation_every


@dataclass(frozen=True)
class Metric:
    """A series the loop records: one entry here plus its `measure` is all a new metric takes (and its line in
    shared/metric_names.py KNOWN, which says which way is better; TrainSpec.evaluated says when it applies)."""

    name: str
    measure: Measure | None = None  # None: the training step's own output (the loss)
    every: Callable[[TrainSpec], int] = every_evaluation  # measured at the iterations divisible by this, and last
    stops_on_nonfinite: bool = False  # an inf or nan ends the run `diverged` (unless spec.allow_nonfinite)


METRICS: tuple[Metric, ...] = (
    Metric(LOSS, every=every_iteration, stops_on_nonfinite=True),
    Metric(ACCURACY, lambda e: _right(e.train, e.data.target)),
    Metric(VAL_LOSS, _val_loss),
    Metric(VAL_ACCURACY, lambda e: _right(e.val, e.data.val.target if e.data.val else None)),
)


Tracked = tuple[float, int, float]  # (best, its iteration (-1: none yet), last) of one metric


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
    tracked: dict[str, Tracked] = field(default_factory=dict)  # every other metric's, by name


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
    metrics: dict[str, Tracked] = field(default_factory=dict)  # every metric's, the loss's too


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
          metrics: tuple[Metric, ...] = METRICS, arrays: tuple[np.ndarray, np.ndarray] | None = None) -> TrainResult:
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
        data = draw(spec, device, arrays)  # `arrays`: the dataset's (x, y), for a spec with data
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
            made = Recorder.for_device(m.name, sink or _discard, held, dtype, device, first, every,
                                       m.stops_on_nonfinite and not spec.allow_nonfinite, higher_is_better(m.name))
            return made.carry(*start.tracked[m.name]) if m.name in start.tracked else made

        (stepped,) = [m for m in metrics if m.measure is None]  # the one the step itself produces
        losses = recorder(stepped).carry(start.best_loss, start.best_iteration, start.last_loss)
        wanted = spec.evaluated
        measured = [(m.measure, m.every(spec), recorder(m)) for m in metrics
                    if m.measure is not None and m.name in wanted and sink]
        recorders = [losses, *(r for _, _, r in measured)]

        def evaluate(t: int) -> None:
            """Measure the other metrics due at iteration t on the weights it starts from."""
            due = [(measure, r) for measure, every, r in measured if t % every == 0 or t == spec.iterations]
            if not due:
                return
            with torch.no_grad():
                evaluation = Evaluation(spec, data, w1, w2)
                full = [r.record(measure(evaluation)) for measure, r in due]
            if any(full):
                flush(t)

        fast = fast_step(spec, data, w1, w2, device)
        t0 = last_flush = last_ckpt = time.perf_counter()

        def result(weights_at: int) -> TrainResult:
            return TrainResult(w1.detach(), w2.detach(), losses.last, losses.best, losses.best_at,
                               start.seconds + time.perf_counter() - t0, losses.first, weights_at,
                               {r.name: (r.best, r.best_at, r.last) for r in recorders})

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
                          start.seconds + time.perf_counter() - t0,
                          {r.name: (r.best, r.best_at, r.last) for _, _, r in measured})

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
            evaluate(t)

            # forward, backward, update (on the iteration's mini-batch, when the dataset is batched)
            rows = data.batch(t)
            if fast is not None:
                loss = fast()
            elif autograd:
                y_pred = activate(rows.x.mm(w1), spec.activation).mm(w2)
                loss = loss_value(y_pred, rows, spec.loss)
                loss.backward()  # type: ignore[no-untyped-call]
                with torch.no_grad():  # .grad was set by the backward just run
                    w1 -= lr * w1.grad  # type: ignore[operator]
                    w2 -= lr * w2.grad  # type: ignore[operator]
                    w1.grad.zero_()  # type: ignore[union-attr]
                    w2.grad.zero_()  # type: ignore[union-attr]
            else:
                loss, dw1, dw2 = manual_grads(rows, w1, w2, spec.activation, spec.loss)
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

        # and once more on the weights the run ends with (its own point when the last is off the grid)
        for _, every, r in measured:
            if spec.iterations % every:
                r.first = spec.iterations
        evaluate(spec.iterations)
        flush(spec.iterations)
    return result(spec.iterations)
