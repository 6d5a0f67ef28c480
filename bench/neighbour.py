"""CPU workers that share a box: a note-sized CPU training loop timed quiet and beside one busy process started
as another terminal would start it (`setsid`), with the OpenMP settings a tensorq CPU worker gets
(worker/launcher.cpu_env) against torch's own (libgomp spinning up to 300,000 times). Each run is a fresh
process, since OpenMP reads its settings once."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.measures import Result, result
from worker.launcher import cpu_env

# The study note's loop, sized as the note sizes it, timed after a short warm-up.
LOOP = """
import sys, time, torch
torch.manual_seed(0)
x, y = torch.randn(64, 1000), torch.randn(64, 10)
w1, w2 = torch.randn(1000, 100, requires_grad=True), torch.randn(100, 10, requires_grad=True)
def step():
    global w1, w2
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


def _time(env: dict[str, str], iterations: int) -> float:
    out = subprocess.run([sys.executable, "-c", LOOP, str(iterations)], env=env, capture_output=True, text=True,
                         check=True, timeout=600)
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
    ours = dict(today, **cpu_env(None, today))
    quiet_today, quiet_ours, busy_ours, busy_today = [], [], [], []
    for _ in range(rounds):  # interleaved, so drift in the machine's speed hits every side alike
        quiet_today.append(_time(today, iterations))
        quiet_ours.append(_time(ours, iterations))
        with _neighbour():
            busy_ours.append(_time(ours, iterations))
            busy_today.append(_time(today, iterations))
    med = statistics.median
    detail = (f"{iterations} note iterations on the CPU, {rounds} rounds, medians; beside the busy process, "
              f"torch's own settings took {med(busy_today):.2f} s ({med(busy_today) / med(quiet_today):.1f}x quiet)")
    return [
        result("CPU job, quiet: a tensorq CPU worker's settings vs torch's own", med(quiet_ours), med(quiet_today),
               "s", "<=", 1.1, detail),
        result("CPU job beside a busy process (setsid) vs torch's own quiet", med(busy_ours), med(quiet_today),
               "s", "<=", 2.0, detail),
    ]
