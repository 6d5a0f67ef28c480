"""The study note's training loop, written inline exactly as the note has it: the reference every
tensorq training run is compared against (and the baseline bench/ measures tensorq against)."""

from __future__ import annotations

import torch


def note_loop(seed: int, N: int = 64, D_in: int = 1000, H: int = 100, D_out: int = 10,
              learning_rate: float = 1e-6, iterations: int = 500, device: str = "cpu",
              dtype: torch.dtype = torch.float32, item: bool = True):
    """The losses (when `item`: the note reads each with .item()) and the final weights."""
    torch.manual_seed(seed)
    x = torch.randn(N, D_in).to(device, dtype)
    y = torch.randn(N, D_out).to(device, dtype)
    w1 = torch.randn(D_in, H).to(device, dtype).requires_grad_()
    w2 = torch.randn(H, D_out).to(device, dtype).requires_grad_()
    losses = []
    for _ in range(iterations):
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        if item:
            losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    return losses, w1.detach(), w2.detach()
