"""The study note's training loop, written inline exactly as the note has it: the reference every
tensorq training run is compared against."""

from __future__ import annotations

import torch


def note_loop(seed: int, N: int = 64, D_in: int = 1000, H: int = 100, D_out: int = 10,
              learning_rate: float = 1e-6, iterations: int = 500):
    torch.manual_seed(seed)
    x = torch.randn(N, D_in)
    y = torch.randn(N, D_out)
    w1 = torch.randn(D_in, H, requires_grad=True)
    w2 = torch.randn(H, D_out, requires_grad=True)
    losses = []
    for _ in range(iterations):
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    return losses, w1.detach(), w2.detach()
