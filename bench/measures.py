"""Each benchmark: tensorq and its yardstick measured in the same run, reported as a ratio against a goal."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.stack import HANDWRITTEN_QUEUE, REPO, TENSORQ_QUEUE, Stack

A, B = [[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]


@dataclass
class Result:
    name: str
    tensorq: float
    yardstick: float
    unit: str
    ratio: float  # tensorq / yardstick
    goal: str  # e.g. ">= 0.9"
    met: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def result(name: str, tensorq: float, yardstick: float, unit: str, goal_op: str, goal: float, detail: str) -> Result:
    ratio = tensorq / yardstick
    met = ratio >= goal if goal_op == ">=" else ratio <= goal
    return Result(name, round(tensorq, 4), round(yardstick, 4), unit, round(ratio, 3), f"{goal_op} {goal}", met,
                  detail)


def _rate(fn, n: int) -> float:
    started = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - started)


def _handwritten_ops(n: int) -> None:
    from bench.handwritten import op

    pending = [op.apply_async(("add", A, B), queue=HANDWRITTEN_QUEUE) for _ in range(n)]
    for r in pending:
        r.get(timeout=300)


def _tensorq_ops(client, n: int) -> None:
    jobs = [client.submit_op("add", A, B, device="cpu", queue=TENSORQ_QUEUE) for _ in range(n)]
    for job in jobs:
        job.wait(timeout=300)
        job.result_array()


def _tensorq_map(client, n: int) -> None:
    jobs = client.map_op("add", [(A, B)] * n, device="cpu", queue=TENSORQ_QUEUE)
    results = client.gather(jobs, timeout=300)  # per-op results, fetched together
    assert len(results) == n


def tiny_ops(stack: Stack, client, n: int, rounds: int) -> list[Result]:
    """Tiny op jobs per second, submit to result in hand, one worker process each."""
    _handwritten_ops(20)
    _tensorq_ops(client, 20)
    hand, ours, batched = [], [], []
    for _ in range(rounds):  # interleaved, so drift in the machine's speed hits both alike
        hand.append(_rate(_handwritten_ops, n))
        ours.append(_rate(lambda k: _tensorq_ops(client, k), n))
        batched.append(_rate(lambda k: _tensorq_map(client, k), n * 5))
    h, o, m = statistics.median(hand), statistics.median(ours), statistics.median(batched)
    return [
        result("tiny op jobs/s, one message each", o, h, "jobs/s", ">=", 0.9, f"{n} jobs x {rounds} rounds, median"),
        result("tiny op jobs/s, batched (client.map_op + gather)", m, h, "jobs/s", ">=", 3.0,
               f"{n * 5} ops x {rounds} rounds, median; yardstick: the hand-written task, one message each"),
        many_file(stack, h, n * 10),
    ]


def many_file(stack: Stack, handwritten_rate: float, n: int) -> Result:
    """`tensorq submit op --many FILE.jsonl --wait`, timed as a user runs it (process start-up included)."""
    import json

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ops.jsonl"
        path.write_text("".join(json.dumps({"op": "add", "a": A, "b": B, "device": "cpu"}) + "\n" for _ in range(n)))
        started = time.perf_counter()
        subprocess.run([*tensorq_cmd(), "submit", "op", "--many", str(path), "--queue", TENSORQ_QUEUE, "--wait",
                        "--json"], env=stack.env(), check=True, capture_output=True, cwd=REPO)
        rate = n / (time.perf_counter() - started)
    return result("tiny op jobs/s, `submit op --many FILE.jsonl --wait`", rate, handwritten_rate, "jobs/s", ">=", 3.0,
                  f"{n} ops, CLI start-up included")


def train_wall(client, iterations: int, rounds: int) -> Result:
    """Submit to full history stored and read back, against the note's loop inline, at the note's sizes."""
    sys.path.insert(0, str(REPO))
    from tests.note_loop import note_loop

    inline, ours = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        note_loop(seed=0, iterations=iterations)
        inline.append(time.perf_counter() - started)
        started = time.perf_counter()
        job = client.submit_train(iterations=iterations, seed=0, device="cpu", queue=TENSORQ_QUEUE)
        job.wait(timeout=600)
        assert len(job.losses()) == iterations
        ours.append(time.perf_counter() - started)
    return result("training job wall time vs the loop inline", min(ours), min(inline), "s", "<=", 1.05,
                  f"{iterations} iterations, 64x1000->100->10 float32 CPU, best of {rounds}")


def recording(iterations: int, rounds: int) -> Result:
    """The training loop with every loss recorded (device buffer, batched flushes) against no recording."""
    import torch

    from shared.specs import TrainSpec
    from worker import mlp

    spec = TrainSpec(iterations=iterations, seed=0)
    on, off = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        mlp.train(spec, torch.device("cpu"), sink=None)
        off.append(time.perf_counter() - started)
        started = time.perf_counter()
        mlp.train(spec, torch.device("cpu"), sink=lambda first, losses: None)
        on.append(time.perf_counter() - started)
    return result("loss recording on vs off, in the loop", min(on), min(off), "s", "<=", 1.03,
                  f"{iterations} iterations at the note's sizes, best of {rounds}")


def tensorq_cmd() -> list[str]:
    found = shutil.which("tensorq")
    return [found] if found else [sys.executable, "-m", "producer"]


def startup(stack: Stack, job_id: str, runs: int) -> list[Result]:
    """Process start-up to exit, median of `runs`, against `python -c "import click, redis"`."""
    def median_s(cmd: list[str]) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(cmd, env=stack.env(), check=True, capture_output=True, cwd=REPO)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    base = median_s([sys.executable, "-c", "import click, redis"])
    return [result("`tensorq --help` start-up", median_s([*tensorq_cmd(), "--help"]), base, "s", "<=", 1.5,
                   f"median of {runs}; yardstick: python -c 'import click, redis'"),
            result("`tensorq status JOB` start-up", median_s([*tensorq_cmd(), "status", job_id]), base, "s", "<=", 1.5,
                   f"median of {runs}; includes one Redis round trip")]
