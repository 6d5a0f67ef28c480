"""`tensorq worker`: node names, supervision, routing and heartbeats, with real processes."""

from __future__ import annotations

import json
import os
import signal
import socket

from tests.support.cli import Cli
from tests.support.processes import start_launcher, start_redis, stop_process, tq_env, wait_until


def test_node_names_are_unique_on_one_host(redis_server, tq_home, registry, cpu_worker, tmp_path) -> None:
    second = start_launcher(redis_server.url, tq_home, tmp_path / "w2.log", "--gpus", "none", registry=registry)
    try:
        names = {n["name"] for n in registry.live()}
        host = socket.gethostname()
        assert {f"cpu@{host}", f"cpu-2@{host}"} <= names
    finally:
        stop_process(second.proc, 40)


def test_a_dead_worker_process_is_restarted(redis_server, tq_home, registry, tmp_path) -> None:
    """Given a launcher whose worker process is SIGKILLed, the launcher lives on and starts a new one."""
    launcher = start_launcher(redis_server.url, tq_home, tmp_path / "w.log", "--gpus", "none", "--name", "crashy",
                              registry=registry)
    try:
        [node] = launcher.nodes(registry)
        os.kill(int(node["pid"]), signal.SIGKILL)

        def replaced() -> bool:
            fresh = launcher.nodes(registry)
            return bool(fresh) and fresh[0]["pid"] != node["pid"] and fresh[0]["state"] == "idle"

        wait_until(replaced, 90, "restarted worker")
        assert launcher.proc.poll() is None
        assert "restarting" in (tmp_path / "w.log").read_text()
    finally:
        stop_process(launcher.proc, 40)


def test_auto_routes_to_gpu_only_when_a_gpu_worker_is_alive(client, registry) -> None:
    assert client.route("auto") == "cpu"
    registry.beat("gpu0@fake-node", {"queues": "gpu", "state": "idle"})
    try:
        assert client.route("auto") == "gpu"
        assert client.route("cpu") == "cpu"
    finally:
        registry.drop("gpu0@fake-node")
    assert client.route("auto") == "cpu" and client.route("cuda") == "gpu"


def test_a_busy_worker_heartbeats_its_job(client, registry, cpu_worker, cli) -> None:
    """Given a worker busy with a long job, `tensorq workers --json` still answers at once, naming the job."""
    job = client.submit_train(iterations=3000, hidden_size=400, device="cpu", allow_nonfinite=True)

    def busy_with_it() -> bool:
        return any(n.get("job") == job.id and n.get("state") == "running" for n in registry.live())

    wait_until(busy_with_it, 60, "busy heartbeat")
    wait_until(lambda: any(n.get("iteration") for n in registry.live() if n.get("job") == job.id), 60, "progress")
    listed = cli("workers", "--json", timeout=10)
    assert listed.returncode == 0, listed.stderr
    [node] = [n for n in json.loads(listed.stdout) if n["job"] == job.id]
    assert node["state"] == "running" and node["device"] == "cpu"
    # its base queues, and the job function queues of what the venv offers (examples/jobs: regress, digits)
    assert [q for q in node["queues"] if ".fn." not in q] == ["cpu", "cpu.high", "cpu.low"]
    assert {"cpu.fn.regress", "cpu.fn.regress.high", "cpu.fn.digits.low"} <= set(node["queues"])
    # a CPU worker has no GPU: absent values are null, never ""
    assert node["gpu_index"] is None and node["memory_free_bytes"] is None and node["memory_total_bytes"] is None
    assert node["iterations"] == 3000 and 0 <= (node["iteration"] or 0) <= 3000
    assert node["seen_at"] > 0 and node["jobs_done"] >= 0
    assert job.wait(timeout=120).state == "succeeded"


def test_workers_here_is_a_health_check(cli, cpu_worker, redis_server, tmp_path) -> None:
    """Given a live worker on this host, `workers --here` exits 0; on a broker with no workers, 1."""
    here = cli("workers", "--here", "--json")
    assert here.returncode == 0 and all(n["host"] == socket.gethostname() for n in json.loads(here.stdout))
    empty = start_redis(tmp_path / "empty-redis")
    try:
        lonely = Cli(tq_env(empty.url, tmp_path))("workers", "--here")
        assert lonely.returncode == 1 and "no live worker on" in lonely.stderr
    finally:
        stop_process(empty.proc)
