"""Redis going away: with persistence on, a restart loses no queued job, and workers reconnect by
themselves. (With Redis down, every CLI command exits 3 in one line: tests/e2e/test_cli_errors.py.)"""

from __future__ import annotations

import json

from tests.support.cli import Cli
from tests.support.processes import start_launcher, start_redis, stop_process, tq_env, wait_until


def test_queued_jobs_survive_a_redis_restart_and_workers_reconnect(tmp_path) -> None:
    """Given jobs queued with no worker, when Redis (append-only) restarts, they are all still there; a worker
    started then runs them; and when Redis restarts under that worker, it reconnects and serves on."""
    data = tmp_path / "redis"
    server = start_redis(data, None, "--appendonly", "yes", "--appendfsync", "always")
    cli = Cli(tq_env(server.url, tmp_path / "home"))
    ids = [json.loads(cli("submit", "op", "add", str(i), "1", "--device", "cpu", "--json").stdout)["id"]
           for i in range(3)]
    stop_process(server.proc)  # SIGTERM: Redis flushes its append-only file and exits

    server = start_redis(data, server.port, "--appendonly", "yes", "--appendfsync", "always")
    try:
        assert server.client().llen("cpu") == 3
        assert [json.loads(cli("status", j, "--json").stdout)["state"] for j in ids] == ["queued"] * 3
        from shared.keys import Keys
        from shared.registry import NodeRegistry

        nodes = NodeRegistry(server.client(), Keys())
        worker = start_launcher(server.url, tmp_path / "home", tmp_path / "w.log", "--gpus", "none",
                                registry=nodes)
        try:
            done = cli("wait", *ids, "--timeout", "60", "--json")
            assert done.returncode == 0, done.stderr
            assert [json.loads(cli("result", j, "--json").stdout)["data"] for j in ids] == [1, 2, 3]

            stop_process(server.proc)  # Redis goes away under a connected worker...
            server = start_redis(data, server.port, "--appendonly", "yes", "--appendfsync", "always")
            after = cli("submit", "op", "mul", "6", "7", "--device", "cpu", "--wait", "--json", timeout=120)
            assert after.returncode == 0, (after.stderr, (tmp_path / "w.log").read_text()[-3000:])
            assert json.loads(cli("result", json.loads(after.stdout)["id"], "--json").stdout)["data"] == 42
            wait_until(lambda: bool(nodes.live()), 30, "the worker's heartbeat after the restart")
        finally:
            stop_process(worker.proc, 40)
    finally:
        stop_process(server.proc)
