"""The networks the example functions train. Kept apart from the functions' modules, which import torch only
when called: the producer imports a function's module to validate its params before enqueue, and a laptop
that only submits jobs need not have torch."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """inputs -> hidden (tanh) -> outputs: small enough that a step of `regress` takes a few hundred
    microseconds on a CPU, so what tensorq adds per step shows (bench/functions.py)."""

    def __init__(self, inputs: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out
