"""Recording one metric series in the training loop: values are kept where reading them is cheapest until a
flush hands the batch to the sink, once per batch. `Recorder.for_device` picks the way for the device.

The best value (the lowest; the highest with `maximize`, an accuracy's) and the last are tracked on the host
from the flushed batches (for the loss: the summary's best and final loss). With `stop_on_nonfinite` (the loss,
unless the spec allows inf/nan), a flush whose batch holds an inf or nan hands over the batch only up to and
including the first one and sets `diverged` = (its iteration, its value): the loop then stops. The batch is on
the host by then, so the check costs no device sync.
"""

from __future__ import annotations

from collections.abc import Callable
from math import inf, isfinite, nan

import torch

# (metric name, first iteration, step between points, CPU tensor of the values)
Sink = Callable[[str, int, int, torch.Tensor], None]


class Recorder:
    def __init__(self, name: str, sink: Sink, size: int, dtype: torch.dtype, first: int = 0, step: int = 1,
                 stop_on_nonfinite: bool = False, maximize: bool = False) -> None:
        self.name, self.sink, self.size, self.dtype, self.step = name, sink, size, dtype, step
        self.n, self.stop = 0, stop_on_nonfinite
        self.first = first  # the iteration of the batch's first value
        self.sign = -1.0 if maximize else 1.0  # best: the lowest finite value of sign * value
        self.best, self.best_at, self.last = self.sign * inf, -1, nan
        self.diverged: tuple[int, float] | None = None

    @staticmethod
    def for_device(name: str, sink: Sink, size: int, dtype: torch.dtype, device: torch.device, first: int = 0,
                   step: int = 1, stop_on_nonfinite: bool = False, maximize: bool = False) -> Recorder:
        if device.type == "cpu":
            return HostRecorder(name, sink, size, dtype, first, step, stop_on_nonfinite, maximize)
        return DeviceRecorder(device, name, sink, size, dtype, first, step, stop_on_nonfinite, maximize)

    def carry(self, best: float, best_at: int, last: float) -> Recorder:
        """Go on from what a checkpoint tracked so far (a resumed run's best and last loss)."""
        self.best, self.best_at, self.last = best, best_at, last
        return self

    def record(self, value: torch.Tensor) -> bool:
        """Keep one value (0-d, on the device); True when the batch should be flushed now (it is full)."""
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
        if self.stop and not all_finite:  # keep the series up to the first non-finite value, exactly once
            k = int((~finite).nonzero()[0])
            host, finite = host[: k + 1], finite[: k + 1]
            self.diverged = (self.first + self.step * k, host[k].item())
        self.sink(self.name, self.first, self.step, host)
        key = host * self.sign
        if all_finite:
            i = int(torch.argmin(key))
        elif finite.any():  # argmin would return a nan's index: the best is over finite values only
            i = int(torch.argmin(torch.where(finite, key, torch.inf)))
        else:
            i = -1
        if i >= 0 and key[i].item() < self.sign * self.best:
            self.best, self.best_at = host[i].item(), self.first + self.step * i
        self.last = host[-1].item()
        self.first += self.step * len(host)


class DeviceRecorder(Recorder):
    """On a GPU: a copy into a preallocated device buffer per value (no sync, no allocation), and one copy to
    the host per batch."""

    def __init__(self, device: torch.device, name: str, sink: Sink, size: int, dtype: torch.dtype, first: int = 0,
                 step: int = 1, stop_on_nonfinite: bool = False, maximize: bool = False) -> None:
        super().__init__(name, sink, size, dtype, first, step, stop_on_nonfinite, maximize)
        self.buf = torch.empty(self.size, dtype=self.dtype, device=device)

    def record(self, value: torch.Tensor) -> bool:
        self.buf[self.n] = value.detach()
        self.n += 1
        return self.n == self.size

    def take(self) -> torch.Tensor:
        return self.buf[: self.n].cpu()  # the CPU-GPU sync point, once per batch


class HostRecorder(Recorder):
    """On the CPU the device is the host and `.item()` is a plain read: it measured 0.5% of a note-sized
    iteration, against 3% for the copy into a buffer (the copy's dispatch costs more than the read). Each value
    is a Python float here, so a non-finite one is seen at once and flushed: the run stops at that iteration."""

    def __init__(self, name: str, sink: Sink, size: int, dtype: torch.dtype, first: int = 0, step: int = 1,
                 stop_on_nonfinite: bool = False, maximize: bool = False) -> None:
        super().__init__(name, sink, size, dtype, first, step, stop_on_nonfinite, maximize)
        self.values: list[float] = []

    def record(self, value: torch.Tensor) -> bool:
        v = value.item()  # exact: float32 and bfloat16 values widen to a Python float
        self.values.append(v)
        self.n += 1
        return self.n == self.size or (self.stop and not isfinite(v))

    def take(self) -> torch.Tensor:
        host, self.values = torch.tensor(self.values, dtype=self.dtype), []
        return host
