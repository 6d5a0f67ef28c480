"""Jobs survive their workers: SIGTERM hands a job back checkpointed; kill -9 is recovered through the
lease within a minute; either way the history holds each iteration once, equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.conftest import start_launcher, stop_process, wait_until
from tests.note_loop import note_loop

# Small enough to run fast, big enough that a run lasts a few seconds on a CPU.
SIZES = {"batch_size": 64, "input_size": 100, "hidden_size": 50, "output_size": 10}
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in SIZES.items()]


def expected_losses(iterations: int, seed: int) -> list[float]:
    losses, _, _ = note_loop(seed, SIZES["batch_size"], SIZES["input_size"], SIZES["hidden_size"],
                             SIZES["output_size"], iterations=iterations)
    return losses


def status(tq, job_id: str) -> dict:
    return json.loads(tq("status", job_id, "--json").stdout)


def progress(registry, job_id: str) -> float:
    for node in registry.live():
        if node.get("job") == job_id and node.get("iterations"):
            return (node.get("iteration") or 0) / node["iterations"]
    return 0.0


def test_sigterm_hands_the_job_back_and_another_worker_resumes_it(redis_server, tq_home, registry, tmp_path,
                                                                 tq) -> None:
    """Given a worker at ~30% of a job, SIGTERM checkpoints it and puts it back on its queue; a new worker
    resumes it, and the history equals the note's loop run inline, value for value."""
    iterations, seed = 40_000, 4
    first = start_launcher(redis_server.url, tq_home, tmp_path / "a.log", "--gpus", "none", "--name", "drain",
                           "--queue", "handback", registry=registry)
    job = json.loads(tq("submit", "train", *FLAGS, "--iterations", str(iterations), "--seed", str(seed),
                        "--queue", "handback", "--json").stdout)
    wait_until(lambda: progress(registry, job["id"]) >= 0.3, 120, "30% progress")
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=30) == 0
    handed_back = status(tq, job["id"])
    assert handed_back["state"] == "queued" and redis_server.client().llen("handback") == 1

    second = start_launcher(redis_server.url, tq_home, tmp_path / "b.log", "--gpus", "none", "--name", "heir",
                            "--queue", "handback", registry=registry)
    try:
        done = tq("wait", job["id"], "--timeout", "120", "--json")
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout)[0]
    finally:
        stop_process(second.proc, 40)
    assert final["worker"].startswith("heir") and final["summary"]["resumed_from"] >= 0.3 * iterations
    history = json.loads(tq("history", job["id"], "--format", "json").stdout)["loss"]
    assert history == expected_losses(iterations, seed)


def test_kill_9_mid_job_is_recovered_within_60_s(redis_server, tq_home, registry, tmp_path, tq) -> None:
    """Given two workers, killing the process group of the one running a job at ~30% (kill -9) makes the
    job run again from its checkpoint within 60 s, and it succeeds with each iteration once."""
    iterations, seed = 60_000, 9
    workers = [start_launcher(redis_server.url, tq_home, tmp_path / f"{n}.log", "--gpus", "none", "--name", n,
                              "--queue", "crash", registry=registry) for n in ("crash-a", "crash-b")]
    try:
        job = json.loads(tq("submit", "train", *FLAGS, "--iterations", str(iterations), "--seed", str(seed),
                            "--checkpoint-every", "2000", "--queue", "crash", "--json").stdout)
        wait_until(lambda: progress(registry, job["id"]) >= 0.3, 120, "30% progress")
        [victim] = [n for n in registry.live() if n.get("job") == job["id"]]
        os.killpg(int(victim["pid"]), signal.SIGKILL)  # the Celery worker process leads its own group
        killed_at = time.monotonic()

        def running_again() -> bool:
            s = status(tq, job["id"])
            return s["state"] == "running" and s["attempts"] == 2

        wait_until(running_again, 90, "the job running again")
        recovered_in = time.monotonic() - killed_at
        done = tq("wait", job["id"], "--timeout", "180", "--json")
        assert done.returncode == 0, done.stderr
    finally:
        for w in workers:
            stop_process(w.proc, 40)
    print(f"\nrecovered {recovered_in:.1f} s after kill -9")
    assert recovered_in < 60
    final = json.loads(done.stdout)[0]
    assert final["recoveries"] == 1 and final["attempts"] == 2
    assert final["summary"]["resumed_from"] >= 2000
    history = json.loads(tq("history", job["id"], "--format", "json").stdout)["loss"]
    assert len(history) == iterations
    assert history == expected_losses(iterations, seed)
