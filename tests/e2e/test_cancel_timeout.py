"""Cancel and time limits, end to end: queued jobs never start, running ones stop at once and keep their
history, and the worker goes on serving."""

from __future__ import annotations

import json
import time

from tests.support.processes import start_launcher, stop_process, wait_until
from tests.support.training import LONG


def status(cli, job_id: str) -> dict:
    return json.loads(cli("status", job_id, "--json").stdout)


def test_cancel_a_running_job_stops_it_within_a_second(cli, client, cpu_worker) -> None:
    """Given a running training job, `tensorq cancel` ends it `cancelled` within a second of the request,
    keeping its partial history; the worker then serves the next job."""
    job = json.loads(cli("submit", "train", *LONG, "--json").stdout)
    wait_until(lambda: len(client.job(job["id"]).losses()) > 0, 60, "losses")
    asked_at = time.time()
    done = cli("cancel", job["id"])
    assert done.returncode == 0, done.stderr
    record = client.job(job["id"]).status()
    stopped_after = record.finished_at - asked_at
    assert record.state == "cancelled" and record.error.startswith("cancelled at iteration")
    assert f"cancelled {job['id']}" in done.stdout
    print(f"\ncancelled {stopped_after:.2f} s after the request")
    assert stopped_after < 1.0
    stopped_at = int(record.error.rsplit(" ", 1)[1])
    assert len(client.job(job["id"]).losses()) == stopped_at > 0
    assert cli("submit", "op", "add", "1", "2", "--wait").returncode == 0


def test_a_cancelled_queued_job_never_starts(cli, client, redis_server, tq_home, registry, tmp_path) -> None:
    job = json.loads(cli("submit", "train", "--iterations", "5", "--queue", "cancel-me", "--json").stdout)
    done = cli("cancel", job["id"], "--json")
    assert done.returncode == 0 and json.loads(done.stdout)[0]["state"] == "cancelled"
    launcher = start_launcher(redis_server.url, tq_home, tmp_path / "w.log", "--gpus", "none", "--queue",
                              "cancel-me", "--name", "late", registry=registry)
    try:
        wait_until(lambda: redis_server.client().llen("cancel-me") == 0, 30, "the message to be consumed")
        time.sleep(0.5)
    finally:
        stop_process(launcher.proc, 40)
    record = status(cli, job["id"])
    assert record["state"] == "cancelled" and record["worker"] is None and record["attempts"] == 0
    assert "already cancelled; dropping" in (tmp_path / "w.log").read_text()


def test_cancel_of_a_finished_job_changes_nothing(cli) -> None:
    job = json.loads(cli("submit", "op", "add", "1", "2", "--wait", "--json").stdout)
    done = cli("cancel", job["id"])
    assert done.returncode == 0 and "had already ended: succeeded" in done.stdout
    assert status(cli, job["id"])["state"] == "succeeded"


def test_the_python_client_cancels_too(client, cpu_worker) -> None:
    job = client.submit_train(iterations=2_000_000, batch_size=8, input_size=16, hidden_size=8, output_size=4,
                              device="cpu")
    wait_until(lambda: job.status().state == "running", 60, "running")
    assert job.cancel().state == "cancelled"


def test_a_timeout_fails_the_job_and_keeps_its_history(cli, client, cpu_worker) -> None:
    done = cli("submit", "train", *LONG, "--timeout", "1.5", "--wait", "--json")
    assert done.returncode == 1
    record = json.loads(done.stdout)
    assert record["state"] == "failed" and record["error"].startswith("timed out after 1.5 s (at iteration ")
    at = int(record["error"].rstrip(")").rsplit(" ", 1)[1])
    assert len(client.job(record["id"]).losses()) == at > 0
