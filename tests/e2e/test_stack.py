"""`tensorq up` / `tensorq down`: real redis-server, workers and Flower started and stopped for real."""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request

import redis

from producer import stack
from tests.support.cli import assert_one_line_error
from tests.support.processes import REPO, free_port, wait_until


def run(env: dict, *args: str, timeout: float = 180):
    import subprocess

    return subprocess.run([sys.executable, "-m", "producer", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def stack_env(home) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORQ_")}
    return {**env, "TENSORQ_HOME": str(home)}


def test_up_runs_jobs_and_down_keeps_queued_ones(tmp_path) -> None:
    """Given a bare machine, `up` starts everything, jobs run without flags, and a queued job survives down/up."""
    env = stack_env(tmp_path / "home")
    redis_port, flower_port, metrics_port = free_port(), free_port(), free_port()
    up = run(env, "up", "--detach", "--redis-port", str(redis_port), "--flower-port", str(flower_port),
             "--metrics-port", str(metrics_port), "--gpus", "none")
    assert up.returncode == 0, up.stderr
    try:
        record = json.loads((tmp_path / "home" / "stack.json").read_text())
        assert record["broker_url"] == f"redis://127.0.0.1:{redis_port}/0"
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert record["metrics"]["port"] == metrics_port and record["metrics"]["url"] == metrics_url
        assert f"Flower on http://127.0.0.1:{flower_port}" in up.stderr and f"metrics on {metrics_url}" in up.stderr
        assert oct((tmp_path / "home" / "stack.json").stat().st_mode & 0o777) == "0o600"

        # every other command finds the stack through the record
        done = run(env, "submit", "op", "add", "[1, 2]", "[3, 4]", "--wait", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["state"] == "succeeded"
        parked = json.loads(run(env, "submit", "op", "mul", "2", "3", "--device", "cuda", "--json").stdout)

        # Flower answers, and knows the worker
        with urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=5) as r:
            assert r.status == 200
        def flower_sees_the_worker() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/metrics", timeout=10) as r:
                return 'flower_worker_online{worker="cpu@' in r.read().decode()

        wait_until(flower_sees_the_worker, 30, "Flower seeing the worker")

        # the exporter `up` started reads the same broker: the job that ran, the one parked on gpu
        with urllib.request.urlopen(metrics_url, timeout=10) as r:
            scraped = r.read().decode()
        assert 'tensorq_jobs{kind="op",state="succeeded"} 1.0' in scraped
        assert 'tensorq_queue_depth{priority="normal",queue="gpu"} 1.0' in scraped
    finally:
        down = run(env, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped the metrics exporter" in down.stderr
    for part in ("redis", "workers", "flower", "metrics"):
        assert not stack.alive(record[part]["pid"]), f"{part} still running after down"
    assert not (tmp_path / "home" / "stack.json").exists()

    # up again on the same home (the exporter on 9808 or the next free port): the append-only file brings the
    # queued job back
    up = run(env, "up", "--detach", "--redis-port", str(redis_port), "--no-flower", "--gpus", "none")
    assert up.returncode == 0, up.stderr
    try:
        status = json.loads(run(env, "status", parked["id"], "--json").stdout)
        assert status["state"] == "queued"
        assert redis.Redis(port=redis_port).llen("gpu") == 1
    finally:
        assert run(env, "down").returncode == 0


def test_up_uses_a_given_broker_instead_of_starting_redis(tmp_path, redis_server) -> None:
    env = {**stack_env(tmp_path / "home"), "TENSORQ_BROKER_URL": redis_server.url}
    up = run(env, "up", "--detach", "--no-flower", "--no-metrics", "--gpus", "none")
    assert up.returncode == 0, up.stderr
    assert "not starting Redis" in up.stderr
    record = json.loads((tmp_path / "home" / "stack.json").read_text())
    assert record["redis"] is None and record["broker_url"] == redis_server.url
    assert record["metrics"] is None and "metrics on" not in up.stderr  # --no-metrics
    assert run(env, "down").returncode == 0
    assert redis_server.client().ping()  # not ours to stop


def test_a_busy_explicit_port_is_refused_and_a_busy_default_is_skipped(tmp_path) -> None:
    """Given something listening on a port, `up --redis-port` refuses it (exit 2); as a default it is skipped."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run(stack_env(tmp_path / "home"), "up", "--detach", "--redis-port", str(port))
        assert_one_line_error(done, 2, f"port {port} for Redis is in use")
        said: list[str] = []
        chosen = stack.pick_port(None, port, "Redis", said.append)
    assert chosen != port and stack.port_free(chosen)
    assert said and f"port {port} is in use by another program; starting Redis on port {chosen}" in said[0]


def test_up_in_the_foreground_stops_everything_on_ctrl_c(tmp_path) -> None:
    """Given `tensorq up` in the foreground (started from a script, where SIGINT may be ignored), Ctrl-C
    (SIGINT) stops the workers and Redis and removes the record."""
    import signal
    import subprocess

    env = stack_env(tmp_path / "home")
    up = subprocess.Popen([sys.executable, "-m", "producer", "up", "--no-flower", "--gpus", "none", "--redis-port",
                           str(free_port()), "--metrics-port", str(free_port())], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    record_file = tmp_path / "home" / "stack.json"
    # the exporter is the last part up starts
    wait_until(lambda: record_file.exists() and json.loads(record_file.read_text()).get("metrics"), 90, "up")
    record = json.loads(record_file.read_text())
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=90) == 0
    assert "stopped Redis" in up.stdout.read().decode()
    assert not record_file.exists()
    assert not any(stack.alive(record[part]["pid"]) for part in ("redis", "workers", "metrics"))
