"""CPU workers that share a box: a note-sized CPU training loop timed quiet and beside one busy process started
as another terminal would start it (`setsid`), steered as a tensorq CPU worker steers its jobs (worker/cpu_share:
torch's own thread count while the box is quiet, the cores left beside busy processes), against torch's own
settings (a fixed count of threads that spin up to 300,000 times before they sleep) and a fixed single thread.
Each run is a fresh process, since OpenMP reads its settings once."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.measures import Result, result

# The study note's loop, sized as the note sizes it, timed after a short warm-up.
LOOP = """
import sys, time, torch
from worker import cpu_share
pace = cpu_share.steering(torch.device("cpu")) if sys.argv[2] == "steered" else cpu_share.nothing
torch.manual_seed(0)
x, y = torch.randn(64, 1000), torch.randn(64, 10)
w1, w2 = torch.randn(1000, 100, requires_grad=True), torch.randn(100, 10, requires_grad=True)
def step():
    global w1, w2
    pace()  # as the worker's loop asks it, once per iteration
    loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
    loss.item()
    loss.backward()
    with torch.no_grad():
        w1 -= 1e-6 * w1.grad; w2 -= 1e-6 * w2.grad; w1.grad.zero_(); w2.grad.zero_()
for _ in range(50):
    step()
t0 = time.perf_counter()
for _ in range(int(sys.argv[1])):
    step()
print(time.perf_counter() - t0)
"""
BUSY = "while True: pass"


def _time(env: dict[str, str], iterations: int, steered: bool) -> float:
    out = subprocess.run([sys.executable, "-c", LOOP, str(iterations), "steered" if steered else "fixed"], env=env,
                         capture_output=True, text=True, check=True, timeout=600)
    return float(out.stdout)


@contextmanager
def _neighbour() -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True)  # as `setsid` would
    time.sleep(0.3)
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def run(iterations: int, rounds: int) -> list[Result]:
    today = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    one = dict(today, OMP_NUM_THREADS="1")  # `tensorq worker --cpu-threads 1`
    sides = {"torch quiet": (today, False), "ours quiet": (today, True), "one quiet": (one, False),
             "ours busy": (today, True), "one busy": (one, False), "torch busy": (today, False)}
    times: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(rounds):  # interleaved, so drift in the machine's speed hits every side alike
        for side, (env, steered) in sides.items():
            if side.endswith("quiet"):
                times[side].append(_time(env, iterations, steered))
        with _neighbour():
            for side, (env, steered) in sides.items():
                if side.endswith("busy"):
                    times[side].append(_time(env, iterations, steered))
    med = {side: statistics.median(t) for side, t in times.items()}
    quiet = med["torch quiet"]
    detail = (f"{iterations} note iterations on the CPU, {rounds} rounds, medians; torch's own settings took "
              f"{quiet:.2f} s quiet and {med['torch busy']:.2f} s ({med['torch busy'] / quiet:.1f}x) beside the "
              f"busy process; a fixed single thread {med['one quiet'] / quiet:.2f}x quiet, "
              f"{med['one busy'] / quiet:.2f}x beside it")
    return [
        result("CPU job, quiet: a tensorq CPU worker's steering vs torch's own", med["ours quiet"], quiet,
               "s", "<=", 1.1, detail),
        result("CPU job beside a busy process (setsid) vs torch's own quiet", med["ours busy"], quiet,
               "s", "<=", 2.0, detail),
    ]
