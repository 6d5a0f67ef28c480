"""What `ctx.report` costs a job function: one whose step takes ~300 us (a matmul loop, sized to that on the
machine at hand), reporting its loss every step through the real job context (worker/functions.py), against
the same function reporting nothing. Goal (issue 14): <= 1.02x.

The context's sink drops the values: what is measured is the context's own work per report (recording the
point, the stop check, the batched flush: one host copy of the batch's 0-d tensors every 1,000 reports or
0.5 s), not Redis, which a worker writes to once per flush (about a millisecond in 0.3 s of steps)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench.measures import Result, _alternating, paired

STEP_S = 300e-6
SIZE = 64  # a 64x64 float32 matmul: a few microseconds, single-threaded, so the loop's length sets the step


def _drop(name: str, first: int, stride: int, values: np.ndarray) -> bool:
    return True


def _matmuls_per_step() -> int:
    """How many matmuls make a ~300 us step of the yardstick here: a first guess from the matmul alone, then
    corrected three times from the median of a few short runs of the yardstick itself (the loss, the loop)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(SIZE, SIZE, generator=g), torch.randn(SIZE, SIZE, generator=g)
    started = time.perf_counter()
    for _ in range(2000):
        torch.mm(a, b)
    matmuls = max(1, round(STEP_S / ((time.perf_counter() - started) / 2000)))
    for _ in range(3):
        once = _run(job_function(200, matmuls, report=False))
        step_s = statistics.median(_timed(once) for _ in range(5)) / 200
        matmuls = max(1, round(matmuls * STEP_S / step_s))
    return matmuls


def _timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def job_function(steps: int, matmuls: int, report: bool, tensors: bool = True) -> Callable[[Any], dict[str, float]]:
    """A job function as a user writes one; `report` False is the yardstick, identical but for the report.
    `tensors`: the loss handed over as a 0-d tensor (no sync per step on a GPU), else as a float."""

    def fn(ctx: Any) -> dict[str, float]:
        g = torch.Generator().manual_seed(ctx.seed)
        a, b = torch.randn(SIZE, SIZE, generator=g), torch.randn(SIZE, SIZE, generator=g)
        y, loss = a, torch.zeros(())
        for step in range(steps):
            for _ in range(matmuls):  # the same product each time: no chain whose values could shrink to denormals
                y = torch.mm(a, b)
            loss = y.square().mean()  # computed by both: only handing it over differs
            if report:
                ctx.report(step, loss=loss if tensors else loss.item())
        return {"final_loss": loss.item()}

    return fn


def _run(fn: Callable[[Any], dict[str, float]]) -> Callable[[], None]:
    from worker.functions import JobContext

    def once() -> None:
        ctx = JobContext("bench", {}, 0, torch.device("cpu"), _drop)  # the worker's flush thresholds
        fn(ctx)
        ctx.flush()  # as the runner does when the function returns

    return once


def report_overhead(rounds: int, steps: int = 2000, tensors: bool = True) -> Result:
    """`rounds` (even) alternating pairs of `steps` steps each, reporting every step and reporting nothing;
    the loss reported as a 0-d tensor (as the example functions do), or with `tensors` False as a float."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64x64 matmul gains nothing from a second thread; the hand-offs only add noise
    try:
        matmuls = _matmuls_per_step()
        on, off = _run(job_function(steps, matmuls, True, tensors)), _run(job_function(steps, matmuls, False))
        on(), off()  # warm-up: first calls pay allocations and lazy imports
        ours, theirs = _alternating(on, off, rounds)
    finally:
        torch.set_num_threads(threads)
    step_us = sorted(theirs)[len(theirs) // 2] / steps * 1e6
    what = "a 0-d tensor" if tensors else "a float"
    return paired(f"ctx.report every step ({what}) of a ~300 us step vs no report", ours, theirs, 1.02,
                  f"{steps} steps of {matmuls} {SIZE}x{SIZE} matmuls ({step_us:.0f} us a step), real JobContext, "
                  "a sink that drops the values")
