"""A CPU job's thread count, following how busy its box is.

torch's OpenMP threads meet at the end of every parallel op. While another process holds one of their cores,
each op waits for the scheduler to give the thread it displaced a turn: a note-sized loop ran 83x slower
beside one busy process with torch's defaults. One thread avoids that, at a cost of about 30% when the box is
quiet; short spinning (GOMP_SPINCOUNT) makes every op pay for sleeping and waking instead. So a CPU job runs
with the cores the rest of the box leaves it: every SAMPLE_S it reads how much CPU the whole box used
(/proc/stat, steal included) less what this process used, and sets torch's thread count to the cores left,
torch's own count when quiet. The count changes between iterations, from the job's own thread (OpenMP's thread
count belongs to the thread that sets it).

Matrix products and element-wise ops give the same bits at any thread count; a sum over
TORCH_REDUCTION_GRAIN elements or more may not (torch splits it between the threads). A job whose sums are that
large keeps one count, so its history never depends on what else ran on the box.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping

import torch

from shared import defaults

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC_STAT = "/proc/stat"


def threads_for(others: float, cores: int, most: int) -> int:
    """The threads to run with when the rest of the box lately used `others` of its `cores`: the cores left,
    rounded (half a core's worth of neighbours takes a core), at least 1 and at most `most`."""
    return max(1, min(most, int(cores - others + 0.5)))


def box_busy_seconds() -> float:
    """CPU seconds the whole box has spent not idle since it booted, stolen time included (/proc/stat)."""
    with open(PROC_STAT) as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


class CpuShare:
    """Call it once per iteration (cheap: a clock read) and it keeps torch's thread count to the cores the rest
    of the box leaves. It stops steering once something else sets the count (a job function's own
    torch.set_num_threads wins)."""

    def __init__(self, most: int, cores: int, busy: Callable[[], float] = box_busy_seconds,
                 own: Callable[[], float] = time.process_time, clock: Callable[[], float] = time.monotonic,
                 every_s: float = defaults.CPU_SHARE_SAMPLE_S,
                 set_threads: Callable[[int], None] = torch.set_num_threads,
                 get_threads: Callable[[], int] = torch.get_num_threads) -> None:
        self.most, self.cores, self.every_s = most, cores, every_s
        self._busy, self._own, self._clock, self._set, self._get = busy, own, clock, set_threads, get_threads
        self.threads = most
        self._at, self._box, self._mine = clock(), busy(), own()
        self._due = self._at + every_s

    def __call__(self) -> None:
        now = self._clock()
        if now < self._due:
            return
        box, mine = self._busy(), self._own()
        others = ((box - self._box) - (mine - self._mine)) / max(now - self._at, 1e-9)
        self._at, self._box, self._mine, self._due = now, box, mine, now + self.every_s
        if self._get() != self.threads:  # set by someone else since: theirs to choose now
            self._due = math.inf
            return
        wanted = threads_for(others, self.cores, self.most)
        if wanted != self.threads:
            self._set(wanted)
            self.threads = wanted


TORCH_THREADS = torch.get_num_threads()  # torch's own count, read before any job changes it


def steering(device: torch.device, exact: bool = True, environ: Mapping[str, str] = os.environ
             ) -> Callable[[], None]:
    """What a job on `device` calls once per iteration. A CPU job whose thread count nobody fixed
    (`tensorq worker --cpu-threads N`, the user's own OMP_NUM_THREADS) starts with torch's own count, whatever
    the worker's last job left, and gets a CpuShare, unless its sums are not `exact` at every count (then it
    keeps torch's count). Anything else gets nothing."""
    if device.type != "cpu" or environ.get("OMP_NUM_THREADS"):
        return nothing
    torch.set_num_threads(TORCH_THREADS)
    if not exact or not os.access(PROC_STAT, os.R_OK):
        return nothing
    return CpuShare(TORCH_THREADS, os.cpu_count() or 1)


def sums_stay_exact(rows: int, outputs: int) -> bool:
    """Whether every sum a training job takes (a loss over rows x outputs, at most) is small enough that torch
    adds it up on one thread, so the thread count cannot change its bits."""
    return rows * outputs < defaults.TORCH_REDUCTION_GRAIN


def nothing() -> None:
    """The steering of a job that keeps its thread count."""
