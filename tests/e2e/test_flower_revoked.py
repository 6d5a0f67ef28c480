"""Flower shows a cancelled training job as Celery shows a revoked task (REVOKED, no exception or traceback),
not as a FAILURE; a job that failed still shows as one. A real Flower of this module's own (the `flower` fixture)."""

from __future__ import annotations

import json

from tests.support.flower import Flower, poll
from tests.support.processes import wait_until
from tests.support.training import LONG


def task_in_state(server: Flower, job_id: str, state: str) -> dict:
    tasks = poll(lambda: server.api("/api/tasks"), lambda t: t.get(job_id, {}).get("state") == state, 20,
                f"Flower shows no {state} for task {job_id}")
    return tasks[job_id]


def test_a_cancelled_job_shows_as_revoked_without_a_traceback(flower, cli, client) -> None:
    """Given a running training job, when it is cancelled, then Flower's /api/tasks has it REVOKED with no
    exception and no traceback, while tensorq says `cancelled`; the worker then runs the next job."""
    job = json.loads(cli("submit", "train", *LONG, "--json").stdout)
    wait_until(lambda: len(client.job(job["id"]).losses()) > 0, 60, "losses")
    assert cli("cancel", job["id"]).returncode == 0
    task = task_in_state(flower, job["id"], "REVOKED")
    assert not task.get("exception") and not task.get("traceback"), task
    assert task["name"] == "tensorq.train"
    assert client.job(job["id"]).status().state == "cancelled"
    assert cli("submit", "op", "add", "1", "2", "--wait").returncode == 0


def test_a_failed_job_still_shows_as_a_failure(flower, cli) -> None:
    done = cli("submit", "train", "--lr", "1", "--iterations", "20", "--device", "cpu", "--wait", "--json")
    assert done.returncode == 1
    job = json.loads(done.stdout)
    task = task_in_state(flower, job["id"], "FAILURE")
    assert "diverged: loss became nan at iteration 2" in task["exception"]


def test_a_job_cancelled_while_queued_shows_as_revoked_when_its_message_comes_up(flower, cli, client) -> None:
    """Given a job queued behind a running one and cancelled there, when the worker takes its message, then
    Flower shows it REVOKED (not SUCCESS with {'skipped': 'already cancelled'})."""
    running = json.loads(cli("submit", "train", *LONG, "--json").stdout)
    wait_until(lambda: len(client.job(running["id"]).losses()) > 0, 60, "losses")
    queued = json.loads(cli("submit", "op", "add", "1", "2", "--device", "cpu", "--json").stdout)
    assert cli("cancel", queued["id"]).returncode == 0
    assert cli("cancel", running["id"]).returncode == 0
    task = task_in_state(flower, queued["id"], "REVOKED")
    assert not task.get("exception") and not task.get("traceback") and not task.get("result"), task
