"""Jobs survive their workers: SIGTERM hands a job back checkpointed; kill -9 is recovered through the
lease within a minute; either way the history holds each iteration once, equal to an uninterrupted run.

Both runs are long enough that a worker is stopped mid-run at ~30% with checkpoints behind it (nine at
CHECKPOINT_EVERY before the kill), and share one inline reference run."""

from __future__ import annotations

import json
import signal
import time

from shared.vocab import READY_NODE_STATES
from tests.support.processes import FAST_LAPSE, kill_9_its_worker, start_launcher, stop_process, wait_until
from tests.support.training import FLAGS, expected_losses

ITERATIONS, SEED = 12_000, 4
CHECKPOINT_EVERY = 400  # 30% of ITERATIONS is 3,600: nine checkpoints written before the kill


def status(cli, job_id: str) -> dict:
    return json.loads(cli("status", job_id, "--json").stdout)


def recorded(client, job_id: str) -> float:
    """The share of the job's iterations in its history: flushed every 1,000 iterations or 0.5 s, so finer
    than the 2 s heartbeat, which a run this short could finish between."""
    return len(client.job(job_id).losses()) / ITERATIONS


def test_sigterm_hands_the_job_back_and_another_worker_resumes_it(redis_server, tq_home, registry, tmp_path,
                                                                 cli, client) -> None:
    """Given a worker at ~30% of a job, SIGTERM checkpoints it and puts it back on its queue; a new worker
    resumes it, and the history equals the note's loop run inline, value for value."""
    iterations, seed = ITERATIONS, SEED
    first = start_launcher(redis_server.url, tq_home, tmp_path / "a.log", "--gpus", "none", "--name", "drain",
                           "--queue", "handback", registry=registry)
    try:
        job = json.loads(cli("submit", "train", *FLAGS, "--iterations", str(iterations), "--seed", str(seed),
                             "--queue", "handback", "--json").stdout)
        wait_until(lambda: recorded(client, job["id"]) >= 0.3, 120, "30% progress")
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(timeout=30) == 0
    finally:
        stop_process(first.proc, 40)  # a no-op once it has exited; else it would outlive the test
    handed_back = status(cli, job["id"])
    assert handed_back["state"] == "queued" and redis_server.client().llen("handback") == 1

    second = start_launcher(redis_server.url, tq_home, tmp_path / "b.log", "--gpus", "none", "--name", "heir",
                            "--queue", "handback", registry=registry)
    try:
        done = cli("wait", job["id"], "--timeout", "120", "--json")
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout)[0]
    finally:
        stop_process(second.proc, 40)
    assert final["worker"].startswith("heir") and final["summary"]["resumed_from"] >= 0.3 * iterations
    history = json.loads(cli("history", job["id"], "--format", "json").stdout)["loss"]
    assert history == expected_losses(iterations, seed)


def test_kill_9_mid_job_is_recovered_once_the_lease_lapses(redis_server, tq_home, registry, tmp_path, cli,
                                                            client) -> None:
    """Given two workers with 5 s leases, killing the process group of the one running a job at ~30% (kill -9)
    makes the job run again from its checkpoint within 12 s, and it succeeds with each iteration once."""
    iterations, seed = ITERATIONS, SEED
    workers = [start_launcher(redis_server.url, tq_home, tmp_path / f"{n}.log", "--gpus", "none", "--name", n,
                              "--queue", "crash", **FAST_LAPSE) for n in ("crash-a", "crash-b")]  # started side by side
    try:
        wait_until(lambda: all(len(w.nodes(registry)) == 1 and w.nodes(registry)[0].get("state") in READY_NODE_STATES
                               for w in workers), 90, "both workers")
        job = json.loads(cli("submit", "train", *FLAGS, "--iterations", str(iterations), "--seed", str(seed),
                             "--checkpoint-every", str(CHECKPOINT_EVERY), "--queue", "crash", "--json").stdout)
        wait_until(lambda: recorded(client, job["id"]) >= 0.3, 120, "30% progress")
        kill_9_its_worker(client, registry, job["id"])
        killed_at = time.monotonic()

        def running_again() -> bool:
            s = status(cli, job["id"])
            return s["state"] == "running" and s["attempts"] == 2

        wait_until(running_again, 90, "the job running again")
        recovered_in = time.monotonic() - killed_at
        done = cli("wait", job["id"], "--timeout", "180", "--json")
        assert done.returncode == 0, done.stderr
    finally:
        for w in workers:
            stop_process(w.proc, 40)
    print(f"\nrecovered {recovered_in:.1f} s after kill -9")
    # the workers' 5 s lease (TENSORQ_LEASE_TTL_S): at the default 15 s it could not lapse in under 13 s
    assert recovered_in < 12
    final = json.loads(done.stdout)[0]
    assert final["recoveries"] == 1 and final["attempts"] == 2
    assert final["summary"]["resumed_from"] >= CHECKPOINT_EVERY
    history = json.loads(cli("history", job["id"], "--format", "json").stdout)["loss"]
    assert len(history) == iterations
    assert history == expected_losses(iterations, seed)
