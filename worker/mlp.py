"""The study note's two-layer network and its training loop.

    y_pred = act(x @ w1) @ w2          loss = sse(y_pred, y) | ce(y_pred, argmax(y))

`forward` returns what `backward` needs; each manual gradient sits next to the forward it inverts and is
checked against autograd in tests/test_mlp.py. Nothing here knows about Celery or Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

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
class TrainResult:
    w1: torch.Tensor
    w2: torch.Tensor
    final_loss: float
    best_loss: float
    best_iteration: int
    seconds: float


def train(spec: TrainSpec, device: torch.device, sink: LossSink, flush_iterations: int = 1000,
          flush_interval_s: float = 0.5, should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
    """Run the loop; losses reach `sink` in batches, with one host sync per batch, never per iteration.
    `should_stop` is asked once per iteration (a plain Python check, no sync); True raises Interrupted."""
    data = draw(spec, device)
    w1, w2, lr = data.w1, data.w2, spec.lr
    autograd = spec.grad == "autograd"
    if autograd:
        w1.requires_grad_()
        w2.requires_grad_()
    # Losses stay on the device until a flush; bfloat16 losses widen exactly into float32.
    buf_dtype = torch.float64 if spec.dtype == "float64" else torch.float32
    buf = torch.empty(min(flush_iterations, spec.iterations), dtype=buf_dtype, device=device)
    n_buf, first, best, best_at, last = 0, 0, float("inf"), -1, float("nan")

    t0 = last_flush = time.perf_counter()
    for t in range(spec.iterations):
        if should_stop():
            if n_buf:
                sink(first, buf[:n_buf].cpu())
            raise Interrupted(t)

        # forward, backward, update
        if autograd:
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

        # record the loss on the device; flush a batch to the host now and then
        buf[n_buf] = loss.detach()
        n_buf += 1
        now = time.perf_counter()
        if n_buf == len(buf) or t == spec.iterations - 1 or now - last_flush >= flush_interval_s:
            host = buf[:n_buf].cpu()  # the CPU-GPU sync point, once per batch
            sink(first, host)
            i = int(torch.argmin(host))
            if host[i].item() < best:
                best, best_at = host[i].item(), first + i
            last = host[-1].item()
            first += n_buf
            n_buf, last_flush = 0, now

    return TrainResult(w1.detach(), w2.detach(), last, best, best_at, time.perf_counter() - t0)
