"""The fast path: one training iteration with the hand-derived gradients written into buffers allocated
once, and the weights updated in place. No autograd graph, no allocation of the big tensors per iteration,
and so a step a CUDA graph can capture and replay whole (`--cuda-graph`).

The arithmetic is the manual path's, operation for operation (tests/test_fastpath.py compares it with the
note's loop).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from shared.specs import TrainSpec
from shared.vocab import Activation, Loss
from worker.network import Data

Step = Callable[[], torch.Tensor]  # one iteration: forward, backward, update; returns its loss (0-d)


def fast_step(spec: TrainSpec, data: Data, w1: torch.Tensor, w2: torch.Tensor, device: torch.device) -> Step | None:
    """The fast path's step for the spec (graphed with --cuda-graph), or None for the plain loop."""
    if not (spec.fast or spec.cuda_graph):
        return None
    step = FastStep(data, w1, w2, spec.activation, spec.loss, spec.lr)
    if spec.cuda_graph:
        if device.type != "cuda":
            raise ValueError("--cuda-graph needs a CUDA device; this worker has none")
        return GraphedStep(step)
    return step


class FastStep:
    def __init__(self, data: Data, w1: torch.Tensor, w2: torch.Tensor, activation: str, loss: str,
                 lr: float) -> None:
        self.data, self.w1, self.w2, self.activation, self.kind, self.lr = data, w1, w2, activation, loss, lr
        (b, i), h, o = data.x.shape, w1.shape[1], w2.shape[1]

        def empty(*shape: int) -> torch.Tensor:
            return torch.empty(shape, dtype=data.x.dtype, device=data.x.device)

        self.h, self.act, self.dact = empty(b, h), empty(b, h), empty(b, h)  # (B, H)
        self.y_pred, self.dy = empty(b, o), empty(b, o)  # (B, O)
        self.dw1, self.dw2 = empty(i, h), empty(h, o)
        self.loss = empty()  # 0-d: where each iteration's loss lands
        if loss == Loss.CE:
            assert data.target is not None  # drawn for --loss ce
            self.rows, self.target = torch.arange(b, device=data.x.device), data.target

    def __call__(self) -> torch.Tensor:
        x, w1, w2 = self.data.x, self.w1, self.w2
        # forward
        torch.mm(x, w1, out=self.h)  # (B, H)
        if self.activation == Activation.RELU:
            torch.clamp(self.h, min=0, out=self.act)
        else:
            torch.sigmoid(self.h, out=self.act)
        torch.mm(self.act, w2, out=self.y_pred)  # (B, O)
        # loss and dy_pred
        if self.kind == Loss.SSE:
            torch.sub(self.y_pred, self.data.y, out=self.dy)
            torch.sum(self.dy.square(), dim=(0, 1), out=self.loss)
            self.dy.mul_(2)
        else:
            logp = torch.log_softmax(self.y_pred, dim=1)
            torch.neg(logp[self.rows, self.target].sum(), out=self.loss)
            torch.exp(logp, out=self.dy)  # softmax - onehot
            self.dy[self.rows, self.target] -= 1
        # backward
        torch.mm(self.act.t(), self.dy, out=self.dw2)  # (H, O)
        torch.mm(self.dy, w2.t(), out=self.dact)  # (B, H)
        if self.activation == Activation.RELU:
            self.dact.masked_fill_(self.h < 0, 0)
        else:
            self.dact.mul_(self.act).mul_(1 - self.act)
        torch.mm(x.t(), self.dact, out=self.dw1)  # (I, H)
        # update, in place: w -= lr * dw, rounded as the note rounds it (lr * dw first)
        w1.sub_(self.dw1.mul_(self.lr))
        w2.sub_(self.dw2.mul_(self.lr))
        return self.loss


class GraphedStep:
    """A FastStep captured once as a CUDA graph; each call replays the whole iteration (one launch)."""

    WARMUP_ITERATIONS = 3

    def __init__(self, step: FastStep) -> None:
        self.step = step
        w1, w2 = step.w1.clone(), step.w2.clone()
        side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (cuBLAS handles, workspaces), as capture requires
            for _ in range(self.WARMUP_ITERATIONS):
                step()
        torch.cuda.current_stream().wait_stream(side)
        step.w1.copy_(w1)  # the warm-up must not count: back to the weights it started from
        step.w2.copy_(w2)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step()

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        return self.step.loss
