"""The study note's two-layer network and its training loop.

    y_pred = act(x @ w1) @ w2          loss = sse(y_pred, y) | ce(y_pred, argmax(y))

`forward` returns what `backward` needs; each manual gradient sits next to the forward it inverts and is
checked against autograd in tests/test_mlp.py. Nothing here knows about Celery or Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from math import isfinite

import torch

from shared.errors import Interrupted
from shared.specs import TrainSpec

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
LossSink = Callable[[int, torch.Tensor], None]  # (first iteration, CPU tensor of losses)



@dataclass
class Data:
    x: torch.Tensor  # (B, I)
    y: torch.Tensor  # (B, O)
    target: torch.Tensor | None  # (B,) class indices, for --loss ce
    w1: torch.Tensor  # (I, H)
    w2: torch.Tensor  # (H, O)


def draw(spec: TrainSpec, device: torch.device) -> Data:
    """The reproducibility contract: seed, then x, y, w1, w2 from torch.randn in float32 on the CPU, in
    that order; then cast and move. The same seed gives the same data on any worker."""
    torch.manual_seed(spec.seed)
    B, I, H, O = spec.batch_size, spec.input_size, spec.hidden_size, spec.output_size
    x = torch.randn(B, I)
    y = torch.randn(B, O)
    w1 = torch.randn(I, H)
    w2 = torch.randn(H, O)
    # Class targets come from y itself, so --loss ce draws nothing beyond the contract's four tensors.
    target = y.argmax(dim=1).to(device) if spec.loss == "ce" else None
    dtype = DTYPES[spec.dtype]
    return Data(*(t.to(device=device, dtype=dtype) for t in (x, y)), target,
                *(t.to(device=device, dtype=dtype) for t in (w1, w2)))


# --- forward and manual backward, pair by pair ------------------------------------------------------

def activate(h: torch.Tensor, activation: str) -> torch.Tensor:
    # clamp(min=0), as the note writes it: its gradient at exactly 0 differs from relu()'s.
    return h.clamp(min=0) if activation == "relu" else torch.sigmoid(h)


def d_activate(dh_act: torch.Tensor, h: torch.Tensor, h_act: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return dh_act * (h >= 0)  # clamp's backward passes the gradient where the input reached min
    return dh_act * h_act * (1 - h_act)  # sigmoid' = s * (1 - s)


def loss_value(y_pred: torch.Tensor, data: Data, loss: str) -> torch.Tensor:
    if loss == "sse":
        return (y_pred - data.y).pow(2).sum()
    return torch.nn.functional.cross_entropy(y_pred, data.target, reduction="sum")


def d_loss(y_pred: torch.Tensor, data: Data, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, dy_pred) by hand."""
    if loss == "sse":
        diff = y_pred - data.y  # (B, O)
        return diff.pow(2).sum(), 2 * diff
    logp = torch.log_softmax(y_pred, dim=1)  # (B, O)
    rows = torch.arange(y_pred.shape[0], device=y_pred.device)
    loss_v = -logp[rows, data.target].sum()
    dlogits = logp.exp()  # softmax - onehot
    dlogits[rows, data.target] -= 1
    return loss_v, dlogits


def forward(data: Data, w1: torch.Tensor, w2: torch.Tensor, activation: str):
    h = data.x.mm(w1)  # (B, H)
    h_act = activate(h, activation)  # (B, H)
    y_pred = h_act.mm(w2)  # (B, O)
    return y_pred, (h, h_act)


def manual_grads(data: Data, w1: torch.Tensor, w2: torch.Tensor, activation: str, loss: str):
    """(loss, dw1, dw2) by the chain rule, building no autograd graph."""
    with torch.no_grad():
        y_pred, (h, h_act) = forward(data, w1, w2, activation)
        loss_v, dy_pred = d_loss(y_pred, data, loss)  # (B, O)
        dw2 = h_act.t().mm(dy_pred)  # (H, O)
        dh_act = dy_pred.mm(w2.t())  # (B, H)
        dh = d_activate(dh_act, h, h_act, activation)  # (B, H)
        dw1 = data.x.t().mm(dh)  # (I, H)
    return loss_v, dw1, dw2


def autograd_grads(data: Data, w1: torch.Tensor, w2: torch.Tensor, activation: str, loss: str):
    """(loss, dw1, dw2) from loss.backward(), for checking the manual ones."""
    w1 = w1.detach().clone().requires_grad_()
    w2 = w2.detach().clone().requires_grad_()
    y_pred, _ = forward(data, w1, w2, activation)
    loss_v = loss_value(y_pred, data, loss)
    loss_v.backward()
    return loss_v.detach(), w1.grad, w2.grad


# --- the training loop --------------------------------------------------------------------------------

@dataclass
class Resume:
    """Where a run stands: what a checkpoint holds, and what a resumed run starts from."""

    iteration: int  # the first iteration still to run; every loss before it is in the history
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


class LossRecorder:
    """Losses are kept where reading them is cheapest until a flush hands a batch to the sink; best and last
    are tracked on the host from the flushed batches. `for_device` picks the way for the device.

    With `stop_on_nonfinite`, a flush whose batch holds an inf or nan hands over the batch only up to and
    including the first one, and sets `diverged` = (its iteration, its value): the loop then stops. The
    batch is on the host by then, so the check costs no device sync.
    """

    def __init__(self, sink: LossSink, size: int, dtype: torch.dtype, start: Resume,
                 stop_on_nonfinite: bool = False) -> None:
        self.sink, self.size, self.dtype, self.n, self.stop = sink, size, dtype, 0, stop_on_nonfinite
        self.first, self.best, self.best_at, self.last = start.iteration, start.best_loss, start.best_iteration, \
            start.last_loss
        self.diverged: tuple[int, float] | None = None

    @staticmethod
    def for_device(sink: LossSink, size: int, dtype: torch.dtype, device: torch.device,
                   start: Resume, stop_on_nonfinite: bool = False) -> LossRecorder:
        if device.type == "cpu":
            return HostLosses(sink, size, dtype, start, stop_on_nonfinite)
        return DeviceLosses(sink, size, dtype, start, device, stop_on_nonfinite)

    def record(self, loss: torch.Tensor) -> bool:
        """Keep one loss; True when the batch should be flushed now (it is full)."""
        raise NotImplementedError

    def take(self) -> torch.Tensor:
        """The batch as a CPU tensor of the recorder's dtype; the recorder starts a new one."""
        raise NotImplementedError

    def flush(self) -> None:
        if not self.n:
            return
        host = self.take()
        self.n = 0
        finite = torch.isfinite(host)
        all_finite = bool(finite.all())
        if self.stop and not all_finite:  # keep the history up to the first non-finite loss, exactly once
            k = int((~finite).nonzero()[0])
            host, finite = host[: k + 1], finite[: k + 1]
            self.diverged = (self.first + k, host[k].item())
        self.sink(self.first, host)
        if all_finite:
            i = int(torch.argmin(host))
        elif finite.any():  # argmin would return a nan's index: the best is over finite losses only
            i = int(torch.argmin(torch.where(finite, host, torch.inf)))
        else:
            i = -1
        if i >= 0 and host[i].item() < self.best:
            self.best, self.best_at = host[i].item(), self.first + i
        self.last = host[-1].item()
        self.first += len(host)


class DeviceLosses(LossRecorder):
    """On a GPU: a copy into a preallocated device buffer per iteration (no sync, no allocation), and one
    copy to the host per batch."""

    def __init__(self, sink: LossSink, size: int, dtype: torch.dtype, start: Resume, device: torch.device,
                 stop_on_nonfinite: bool = False) -> None:
        super().__init__(sink, size, dtype, start, stop_on_nonfinite)
        self.buf = torch.empty(size, dtype=dtype, device=device)

    def record(self, loss: torch.Tensor) -> bool:
        self.buf[self.n] = loss.detach()
        self.n += 1
        return self.n == self.size

    def take(self) -> torch.Tensor:
        return self.buf[: self.n].cpu()  # the CPU-GPU sync point, once per batch


class HostLosses(LossRecorder):
    """On the CPU the device is the host and `.item()` is a plain read: it measured 0.5% of a note-sized
    iteration, against 3% for the copy into a buffer (the copy's dispatch costs more than the read). Each value
    is a Python float here, so a non-finite one is seen at once and flushed: the run stops at that iteration."""

    def __init__(self, sink: LossSink, size: int, dtype: torch.dtype, start: Resume,
                 stop_on_nonfinite: bool = False) -> None:
        super().__init__(sink, size, dtype, start, stop_on_nonfinite)
        self.values: list[float] = []

    def record(self, loss: torch.Tensor) -> bool:
        value = loss.item()  # exact: float32 and bfloat16 losses widen to a Python float
        self.values.append(value)
        self.n += 1
        return self.n == self.size or (self.stop and not isfinite(value))

    def take(self) -> torch.Tensor:
        host, self.values = torch.tensor(self.values, dtype=self.dtype), []
        return host


def train(spec: TrainSpec, device: torch.device, sink: LossSink | None, flush_iterations: int = 1000,
          flush_interval_s: float = 0.5, should_stop: Callable[[], str | None] = lambda: None,
          resume: Resume | None = None, checkpoint: Callable[[Resume], None] | None = None,
          checkpoint_every: int | None = None, checkpoint_interval_s: float = 30.0) -> TrainResult:
    """Run the loop (from `resume` when given); losses reach `sink` in batches, one host sync per batch
    (`sink=None` records nothing: the benchmark's "recording off").

    `checkpoint` is handed a Resume every `checkpoint_every` iterations (else every `checkpoint_interval_s`),
    always right after a flush, so the history holds exactly the iterations before it. `should_stop` is
    asked once per iteration (plain Python, no sync); a reason raises Stopped, after a flush (unless
    the lease was lost) and, for a hand-back, a checkpoint.

    A non-finite loss (unless `spec.allow_nonfinite`) raises Stopped("diverged: loss became nan", N) with
    the history ending at iteration N. On the CPU that is right after iteration N (its update applied, so
    the weights are those iteration N + 1 would start from); on a GPU it is noticed at the next flush (up
    to `flush_iterations` or `flush_interval_s` later), whose later losses are dropped, and the weights are
    those at that flush. Either way `TrainResult.weights_at` says which.
    """
    data = draw(spec, device)
    w1, w2, lr = data.w1, data.w2, spec.lr
    start = resume or Resume(0, w1, w2)
    if resume is not None:
        w1 = resume.w1.to(device=device, dtype=w1.dtype)
        w2 = resume.w2.to(device=device, dtype=w2.dtype)
    autograd = spec.grad == "autograd"
    if autograd:
        w1.requires_grad_()
        w2.requires_grad_()
    # bfloat16 losses widen exactly into float32
    losses = LossRecorder.for_device(sink, min(flush_iterations, spec.iterations),
                                     torch.float64 if spec.dtype == "float64" else torch.float32, device, start,
                                     stop_on_nonfinite=not spec.allow_nonfinite)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        fast = fast_step(spec, data, w1, w2, device)
        t0 = last_flush = last_ckpt = time.perf_counter()

        def result(weights_at: int) -> TrainResult:
            return TrainResult(w1.detach(), w2.detach(), losses.last, losses.best, losses.best_at,
                               start.seconds + time.perf_counter() - t0, losses.first, weights_at)

        def flush(weights_at: int) -> None:
            """Hand the batch over; stop here if it held the first non-finite loss."""
            losses.flush()
            if losses.diverged is not None:
                at, value = losses.diverged
                raise Stopped(at, f"diverged: loss became {value}", result(weights_at))

        def snapshot(t: int) -> Resume:
            flush(t)
            return Resume(t, w1.detach(), w2.detach(), losses.best, losses.best_at, losses.last,
                          start.seconds + time.perf_counter() - t0)

        for t in range(start.iteration, spec.iterations):
            # stop when asked, checkpoint when due
            if reason := should_stop():
                if reason == "handback" and checkpoint is not None:
                    checkpoint(snapshot(t))  # to resume from elsewhere
                if reason != "lease lost":  # a job taken over is no longer ours to write
                    flush(t)
                raise Stopped(t, reason, result(t))
            if checkpoint is not None and t > start.iteration:
                now = time.perf_counter()
                due = t % checkpoint_every == 0 if checkpoint_every else now - last_ckpt >= checkpoint_interval_s
                if due:
                    checkpoint(snapshot(t))
                    last_ckpt = last_flush = now

            # forward, backward, update
            if fast is not None:
                loss = fast()
            elif autograd:
                y_pred = activate(data.x.mm(w1), spec.activation).mm(w2)
                loss = loss_value(y_pred, data, spec.loss)
                loss.backward()
                with torch.no_grad():
                    w1 -= lr * w1.grad
                    w2 -= lr * w2.grad
                    w1.grad.zero_()
                    w2.grad.zero_()
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
    finally:  # TF32 is process-wide: the next job (an op, say) must not inherit it
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    return result(spec.iterations)


def fast_step(spec: TrainSpec, data: Data, w1: torch.Tensor, w2: torch.Tensor,
              device: torch.device) -> Callable[[], torch.Tensor] | None:
    """The fast path's step (graphed with --cuda-graph), or None for the plain loop."""
    if device.type == "cuda":  # train() puts the process-wide setting back when the job ends
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = spec.tf32
    if not (spec.fast or spec.cuda_graph):
        return None
    from worker.fastpath import FastStep, GraphedStep

    step = FastStep(data, w1, w2, spec.activation, spec.loss, spec.lr)
    if spec.cuda_graph:
        if device.type != "cuda":
            raise ValueError("--cuda-graph needs a CUDA device; this worker has none")
        return GraphedStep(step)
    return step
