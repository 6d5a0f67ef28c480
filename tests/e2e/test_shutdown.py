"""Stopping a worker: warm (the running job finishes) and, on a second signal, handing the job back."""

from __future__ import annotations

import json
import signal

from tests.conftest import start_launcher, wait_until


def test_a_second_sigterm_hands_the_running_job_back(redis_server, tq_home, registry, tmp_path, tq) -> None:
    """Given a worker (on its own queue) mid-job, SIGTERM twice puts the job back on its queue, `queued`."""
    launcher = start_launcher(redis_server.url, tq_home, tmp_path / "w.log", "--gpus", "none", "--name",
                              "drain", "--queue", "drain-test", registry=registry)
    job = json.loads(tq("submit", "train", "--iterations", "200000", "--queue", "drain-test", "--json").stdout)

    def running() -> bool:
        return json.loads(tq("status", job["id"], "--json").stdout)["state"] == "running"

    wait_until(running, 60, "job running")
    launcher.proc.send_signal(signal.SIGTERM)  # warm: it would wait for the job...
    wait_until(lambda: "warm shutdown" in (tmp_path / "w.log").read_text(), 30, "warm shutdown")
    launcher.proc.send_signal(signal.SIGTERM)  # ...until told again
    assert launcher.proc.wait(timeout=60) == 0
    status = json.loads(tq("status", job["id"], "--json").stdout)
    assert status["state"] == "queued" and status["worker"] is None
    assert redis_server.client().llen("drain-test") == 1
    assert "handed back" in (tmp_path / "w.log").read_text()
