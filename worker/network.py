"""The study note's two-layer network, as micrograd would write it.

    y_pred = act(x @ w1) @ w2          loss = sse(y_pred, y) | ce(y_pred, argmax(y))

`forward` returns what `backward` needs; each manual gradient sits next to the forward it inverts and is
checked against autograd in tests/test_mlp.py. Nothing here knows about Celery, Redis or the loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from shared.specs import TrainSpec
from shared.vocab import Activation, Loss, TrainDtype
from worker import dataset
from worker.dataset import BatchOrder, Rows

DTYPES = {TrainDtype.FLOAT32: torch.float32, TrainDtype.FLOAT64: torch.float64, TrainDtype.BFLOAT16: torch.bfloat16}
Grads = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (loss, dw1, dw2)


@dataclass
class Data:
    x: torch.Tensor  # (B, I): the rows a step trains on (with a dataset: every training row)
    y: torch.Tensor  # (B, O)
    target: torch.Tensor | None  # (B,) class indices, for --loss ce
    w1: torch.Tensor  # (I, H)
    w2: torch.Tensor  # (H, O)
    val: Rows | None = None  # the held-out rows (a dataset with --val-fraction)
    order: BatchOrder | None = None  # mini-batches (a dataset with --batch-size): the rows of iteration t

    def batch(self, t: int) -> Data:
        """What iteration t trains on: every row, or its mini-batch."""
        if self.order is None:
            return self
        rows = self.order(t)
        target = self.target[rows] if self.target is not None else None
        return Data(self.x[rows], self.y[rows], target, self.w1, self.w2)


def draw(spec: TrainSpec, device: torch.device, arrays: tuple[np.ndarray, np.ndarray] | None = None) -> Data:
    """The reproducibility contract: seed, then x, y, w1, w2 from torch.randn in float32 on the CPU, in
    that order; then cast and move. The same seed gives the same data on any worker. With a dataset's
    `arrays` (x, y), only w1 and w2 are drawn, and worker/dataset.py splits and batches the rows."""
    torch.manual_seed(spec.seed)
    B, I, H, O = spec.rows, spec.input_size, spec.hidden_size, spec.output_size  # noqa: E741  # the note's names
    if arrays is None:
        x = torch.randn(B, I)
        y = torch.randn(B, O)
    w1 = torch.randn(I, H)
    w2 = torch.randn(H, O)
    dtype = DTYPES[spec.dtype]

    def put(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype)

    if arrays is not None:
        train, val = dataset.prepare(spec, *arrays, device, dtype)
        n = len(train.x)
        order = dataset.BatchOrder(spec.seed, n, spec.batch_size, device) if spec.batch_size else None
        return Data(train.x, train.y, train.target, put(w1), put(w2), val, order)
    # Class targets come from y itself, so --loss ce draws nothing beyond the contract's four tensors.
    target = y.argmax(dim=1).to(device) if spec.loss == Loss.CE else None
    return Data(put(x), put(y), target, put(w1), put(w2))


@contextmanager
def tf32(enabled: bool, device: torch.device) -> Iterator[None]:
    """Let float32 matmuls use TF32 on a CUDA device while the block runs. The flags are process-wide, so they
    are put back on the way out: the next job (an op, say) must not inherit them."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# --- forward and manual backward, pair by pair ------------------------------------------------------

def activate(h: torch.Tensor, activation: str) -> torch.Tensor:
    # clamp(min=0), as the note writes it: its gradient at exactly 0 differs from relu()'s.
    return h.clamp(min=0) if activation == Activation.RELU else torch.sigmoid(h)


def d_activate(dh_act: torch.Tensor, h: torch.Tensor, h_act: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == Activation.RELU:
        return dh_act * (h >= 0)  # clamp's backward passes the gradient where the input reached min
    return dh_act * h_act * (1 - h_act)  # sigmoid' = s * (1 - s)


def loss_value(y_pred: torch.Tensor, data: Data, loss: str) -> torch.Tensor:
    if loss == Loss.SSE:
        return (y_pred - data.y).pow(2).sum()
    assert data.target is not None  # drawn for --loss ce
    return torch.nn.functional.cross_entropy(y_pred, data.target, reduction="sum")


def d_loss(y_pred: torch.Tensor, data: Data, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, dy_pred) by hand."""
    if loss == Loss.SSE:
        diff = y_pred - data.y  # (B, O)
        return diff.pow(2).sum(), 2 * diff
    assert data.target is not None
    logp = torch.log_softmax(y_pred, dim=1)  # (B, O)
    rows = torch.arange(y_pred.shape[0], device=y_pred.device)
    loss_v = -logp[rows, data.target].sum()
    dlogits = logp.exp()  # softmax - onehot
    dlogits[rows, data.target] -= 1
    return loss_v, dlogits


def forward(data: Data, w1: torch.Tensor, w2: torch.Tensor, activation: str
            ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """(y_pred, what the backward needs: (h, h_act))."""
    h = data.x.mm(w1)  # (B, H)
    h_act = activate(h, activation)  # (B, H)
    y_pred = h_act.mm(w2)  # (B, O)
    return y_pred, (h, h_act)


def manual_grads(data: Data, w1: torch.Tensor, w2: torch.Tensor, activation: str, loss: str) -> Grads:
    """(loss, dw1, dw2) by the chain rule, building no autograd graph."""
    with torch.no_grad():
        y_pred, (h, h_act) = forward(data, w1, w2, activation)
        loss_v, dy_pred = d_loss(y_pred, data, loss)  # (B, O)
        dw2 = h_act.t().mm(dy_pred)  # (H, O)
        dh_act = dy_pred.mm(w2.t())  # (B, H)
        dh = d_activate(dh_act, h, h_act, activation)  # (B, H)
        dw1 = data.x.t().mm(dh)  # (I, H)
    return loss_v, dw1, dw2


def autograd_grads(data: Data, w1: torch.Tensor, w2: torch.Tensor, activation: str, loss: str) -> Grads:
    """(loss, dw1, dw2) from loss.backward(), for checking the manual ones."""
    w1 = w1.detach().clone().requires_grad_()
    w2 = w2.detach().clone().requires_grad_()
    y_pred, _ = forward(data, w1, w2, activation)
    loss_v = loss_value(y_pred, data, loss)
    loss_v.backward()  # type: ignore[no-untyped-call]  # torch leaves it untyped
    assert w1.grad is not None and w2.grad is not None
    return loss_v.detach(), w1.grad, w2.grad
