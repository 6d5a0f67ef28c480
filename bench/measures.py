"""Each benchmark: tensorq and its yardstick measured in the same run, reported as a ratio against a goal."""

from __future__ import annotations

import math
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


def result(name: str, tensorq: float, yardstick: float, unit: str, goal_op: str, goal: float, detail: str,
           ratio: float | None = None) -> Result:
    """`ratio` defaults to tensorq / yardstick."""
    ratio = round(tensorq / yardstick if ratio is None else ratio, 3)  # judged as printed
    met = ratio >= goal if goal_op == ">=" else ratio <= goal
    return Result(name, round(tensorq, 4), round(yardstick, 4), unit, ratio, f"{goal_op} {goal}", met, detail)


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
    _tensorq_map(client, 20)  # gather hands back torch tensors: torch's import is paid once, here
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

    def inline() -> None:
        note_loop(seed=0, iterations=iterations)

    def job() -> None:
        job = client.submit_train(iterations=iterations, seed=0, device="cpu", queue=TENSORQ_QUEUE)
        job.wait(timeout=600)
        assert len(job.losses()) == iterations

    return paired("training job wall time vs the loop inline", *_alternating(job, inline, rounds), 1.05,
                  f"{iterations} iterations, 64x1000->100->10 float32 CPU")


def recording(iterations: int, rounds: int) -> Result:
    """The training loop with every loss recorded (batched flushes) against no recording."""
    on, off = _alternating(_loop(iterations, record=True), _loop(iterations, record=False), rounds)
    return paired("loss recording on vs off, in the loop", on, off, 1.03,
                  f"{iterations} iterations at the note's sizes")


def evaluation(rounds: int, batch_size: int | None = None) -> Result:
    """The README's digits run: 100 training iterations then one evaluation (accuracy, val_loss, val_accuracy,
    as the loop measures them at --eval-every 100) against the same 100 iterations alone. Short units, many
    alternating rounds: a whole 2-second run against another moved by +-15% on this VM with nothing changed."""
    import torch

    from shared import datasets
    from shared.specs import parse_spec
    from worker import loop, network

    d = datasets.named("digits")
    spec = parse_spec({"kind": "train", "data": d.ref(), "loss": "ce", "activation": "sigmoid", "grad": "manual",
                       "standardize": True, "val_fraction": 0.25, "hidden_size": 64, "lr": 1e-2, "iterations": 2000,
                       "eval_every": 100, "seed": 0, "batch_size": batch_size})
    data = network.draw(spec, torch.device("cpu"), datasets.from_blob(d.blob, d.sha256))
    w1, w2 = data.w1, data.w2
    measures = [m.measure for m in loop.METRICS if m.measure is not None and m.name in spec.evaluated]
    clock = {"t": 0}

    def steps() -> None:
        for _ in range(100):
            rows = data.batch(clock["t"])
            clock["t"] += 1
            loss, dw1, dw2 = network.manual_grads(rows, w1, w2, spec.activation, spec.loss)
            w1.sub_(spec.lr * dw1)
            w2.sub_(spec.lr * dw2)
            loss.item()  # the CPU recorder reads each loss

    def steps_then_evaluation() -> None:
        steps()
        with torch.no_grad():
            e = loop.Evaluation(spec, data, w1, w2)
            for m in measures:
                m(e).item()

    batch = f"mini-batches of {batch_size}" if batch_size else "full batch (1,347 rows)"
    return paired(f"evaluation every 100 iterations vs none, digits {'mini' if batch_size else 'full'} batch",
                  *_alternating(steps_then_evaluation, steps, rounds), 1.03,
                  f"100 iterations + one evaluation vs 100 iterations, 64->64->10 sigmoid/ce manual, {batch}; "
                  "accuracy, val_loss, val_accuracy")


def noise_floor(iterations: int, rounds: int) -> dict:
    """The training pairs' estimator applied to one loop against itself (recording off on both sides): how
    far from 1.0 this machine moves a ratio that should be exactly 1, in this run."""
    a, b = _alternating(_loop(iterations, record=False), _loop(iterations, record=False), rounds)
    return {"name": "the loop against itself (A/A)", "ratio": round(paired_ratio(a, b), 3),
            "detail": f"{iterations} iterations, recording off on both sides; {rounds} rounds, ratio: {ESTIMATOR}"}


def _loop(iterations: int, record: bool):
    """tensorq's training loop at the note's sizes on the CPU, every loss handed over or none."""
    import torch

    from shared.specs import TrainSpec
    from worker import loop

    spec, cpu = TrainSpec(iterations=iterations, seed=0), torch.device("cpu")
    sink = (lambda name, first, step, values: None) if record else None
    return lambda: loop.train(spec, cpu, sink=sink)


def paired(name: str, ours: list[float], theirs: list[float], goal: float, what: str) -> Result:
    """Seconds, lower is better, from `_alternating`: the ratio is taken from the rounds' own ratios (each
    round ran both back to back), so a slow spell of the machine that spans one round moves one ratio, not
    the result."""
    return result(name, statistics.median(ours), statistics.median(theirs), "s", "<=", goal,
                  f"{what}; {len(ours)} rounds, medians, ratio: {ESTIMATOR}", paired_ratio(ours, theirs))


ESTIMATOR = "geometric mean of the median round ratio with ours first and with theirs first"


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Running first or second in a round can cost a few percent by itself (measured up to 6% on a 2-core VM,
    with one loop against itself): the median ratio of the rounds where ours ran first and that of the rounds
    where theirs did are combined so that this cancels."""
    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
    first, second = ratios[0::2], ratios[1::2]  # _alternating: even rounds run ours first
    return math.sqrt(statistics.median(first) * statistics.median(second))


def _alternating(ours, theirs, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds for each of `rounds` runs of both (an even number); which goes first alternates, so neither
    always runs on the heap, caches or clock speed the other left behind."""
    if rounds < 2 or rounds % 2:
        raise ValueError(f"an even number of rounds, at least 2 (got {rounds})")
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(rounds):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            started = time.perf_counter()
            (ours, theirs)[side]()
            times[side].append(time.perf_counter() - started)
    return times


def tensorq_cmd() -> list[str]:
    found = shutil.which("tensorq")
    return [found] if found else [sys.executable, "-m", "producer"]


def startup(stack: Stack, job_id: str, runs: int) -> list[Result]:
    """Process start-up to exit, median of `runs`, against `python -c "import click, redis"`; the three
    commands take turns, so a slow spell of the machine hits each alike."""
    commands = {"base": [sys.executable, "-c", "import click, redis"], "help": [*tensorq_cmd(), "--help"],
                "status": [*tensorq_cmd(), "status", job_id]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            started = time.perf_counter()
            subprocess.run(cmd, env=stack.env(), check=True, capture_output=True, cwd=REPO)
            times[name].append(time.perf_counter() - started)
    base, help_s, status_s = (statistics.median(times[name]) for name in commands)
    return [result("`tensorq --help` start-up", help_s, base, "s", "<=", 1.5,
                   f"median of {runs}; yardstick: python -c 'import click, redis'"),
            result("`tensorq status JOB` start-up", status_s, base, "s", "<=", 1.5,
                   f"median of {runs}; includes one Redis round trip")]
