"""Broker trouble never costs a job or a worker: Redis at `maxmemory` for longer than the launcher's give-up
window, and Redis killed with SIGKILL mid-job and restarted from its append-only file. Afterwards the same
launcher's workers serve, every job has succeeded, and each training history holds every iteration once,
equal to the note's loop run inline. Real redis-server, real `tensorq worker`, the real CLI (in-process)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.keys import Keys
from shared.registry import NodeRegistry
from shared.vocab import READY_NODE_STATES
from tests.support.cli import Cli, assert_one_line_error
from tests.support.processes import Launcher, RedisServer, start_launcher, start_redis, stop_process, tq_env, wait_until
from tests.support.training import FLAGS, expected_losses

WINDOW_S = 5  # the launcher's give-up window for this test (TENSORQ_RESTART_WINDOW_S); the outage outlasts it


def launch(server: RedisServer, home: Path, log: Path) -> tuple[Launcher, NodeRegistry]:
    """`tensorq worker --gpus none` with a short give-up window, ready."""
    registry = NodeRegistry(server.client(), Keys())
    launcher = start_launcher(server.url, home, log, "--gpus", "none", registry=registry,
                              TENSORQ_RESTART_WINDOW_S=str(WINDOW_S))
    return launcher, registry


def submit_train(cli: Cli, iterations: int, seed: int) -> str:
    done = cli("submit", "train", *FLAGS, "--iterations", str(iterations), "--seed", str(seed),
              "--checkpoint-every", "500", "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def assert_all_done_and_served(cli: Cli, launcher: Launcher, registry: NodeRegistry, trains: dict[str, tuple],
                               op: str, interrupted: str) -> None:
    """Every job succeeded, `interrupted` from its checkpoint after the outage; each history equals the
    inline loop; the same launcher's worker serves on."""
    done = cli("wait", *trains, op, "--timeout", "240", "--json", timeout=300)
    log = launcher.log.read_text(errors="replace")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr, log[-4000:])
    finals = {j["id"]: j for j in json.loads(done.stdout)}
    assert [j["state"] for j in finals.values()] == ["succeeded"] * (len(trains) + 1)
    assert finals[interrupted]["summary"]["resumed_from"] is not None, "the outage never reached the job"
    assert "waiting for it (no job is failed for it)" in log, log[-4000:]
    for job_id, (iterations, seed) in trains.items():
        history = json.loads(cli("history", job_id, "--format", "json").stdout)["loss"]
        assert history == expected_losses(iterations, seed), f"job {job_id}: history differs from the note's loop"
    assert json.loads(cli("result", op, "--json").stdout)["data"] == 42
    assert launcher.proc.poll() is None, log[-4000:]
    wait_until(lambda: any(n.get("state") in READY_NODE_STATES for n in launcher.nodes(registry)), 30,
               "the launcher's worker heartbeating again")
    after = cli("submit", "op", "add", "40", "2", "--device", "cpu", "--wait", "--json", timeout=120)
    assert after.returncode == 0 and json.loads(after.stdout)["state"] == "succeeded", after.stderr
    for never in ("Unrecoverable error", "giving up", "failed:"):
        assert never not in log, f"{never!r} in the worker's log:\n{log[-4000:]}"


FILL = [f"fill:{k}" for k in range(300)]  # 300 values of 64 KB: about 20 MB of the 30 MB allowed


def fill(r) -> None:
    with r.pipeline(transaction=False) as p:
        for key in FILL:
            p.set(key, b"x" * 65536)
        p.execute()


def reach_maxmemory(r) -> None:
    """Redis at maxmemory at once: maxmemory set just under what is used, so no write gets through until the
    fill is deleted."""
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - 1_000_000)


@pytest.fixture
def oom_redis(tmp_path):
    server = start_redis(tmp_path / "redis", None, "--maxmemory", "30mb", "--maxmemory-policy", "noeviction")
    yield server
    stop_process(server.proc)


def test_maxmemory_longer_than_the_give_up_window_costs_no_job_and_no_worker(oom_redis, tmp_path) -> None:
    """Given a worker running a training job with two more jobs waiting, when Redis reaches maxmemory
    (noeviction) for twice the launcher's give-up window, then the CLI says so in one line (exit 3) and
    enqueues nothing; and once memory is freed every job succeeds, histories equal to the inline loop, on the
    same launcher's worker."""
    cli = Cli(tq_env(oom_redis.url, tmp_path / "home"))
    launcher, registry = launch(oom_redis, tmp_path / "home", tmp_path / "worker.log")
    try:
        r = oom_redis.client()
        fill(r)
        long_job = submit_train(cli, 4_000, 3)
        waiting = submit_train(cli, 500, 5)
        op = json.loads(cli("submit", "op", "mul", "6", "7", "--device", "cpu", "--json").stdout)["id"]
        wait_until(lambda: r.exists(f"tensorq:job:{long_job}:ckpt"), 120, "the long job's first checkpoint")
        reach_maxmemory(r)
        before = (r.zcard("tensorq:jobs"), r.llen("cpu"))
        refused = cli("submit", "op", "add", "1", "2", "--device", "cpu", timeout=60)
        assert_one_line_error(refused, 3, f"broker at {oom_redis.url}: out of memory (maxmemory ")
        assert (r.zcard("tensorq:jobs"), r.llen("cpu")) == before  # nothing half-made
        time.sleep(2 * WINDOW_S)  # the outage itself: Redis stays full for twice the give-up window
        assert json.loads(cli("status", long_job, "--json").stdout)["state"] == "running"  # reads still work
        assert launcher.proc.poll() is None

        r.delete(*FILL)
        assert_all_done_and_served(cli, launcher, registry, {long_job: (4_000, 3), waiting: (500, 5)}, op, long_job)
        assert "out of memory; waiting for it" in launcher.log.read_text(errors="replace")  # it said why
    finally:
        stop_process(launcher.proc, 40)


def test_redis_killed_mid_job_and_restarted_from_its_append_only_file(tmp_path) -> None:
    """Given a worker running a training job (checkpointed once at least) and another job queued, when
    Redis is killed with SIGKILL and started again from its append-only file 10 s later, then both jobs
    succeed (the training history equal to the inline loop, each iteration once) and the same launcher's
    worker serves on."""
    data = tmp_path / "redis"
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    server = start_redis(data, None, *aof)
    cli = Cli(tq_env(server.url, tmp_path / "home"))
    launcher, registry = launch(server, tmp_path / "home", tmp_path / "worker.log")
    try:
        job = submit_train(cli, 4_000, 3)
        op = json.loads(cli("submit", "op", "mul", "6", "7", "--device", "cpu", "--json").stdout)["id"]
        wait_until(lambda: server.client().exists(f"tensorq:job:{job}:ckpt"), 120, "the job's first checkpoint")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        down = cli("status", job, timeout=60)
        assert_one_line_error(down, 3, "broker unreachable at")
        time.sleep(10)  # the outage itself
        server = start_redis(data, server.port, *aof)
        registry = NodeRegistry(server.client(), Keys())
        assert_all_done_and_served(cli, launcher, registry, {job: (4_000, 3)}, op, job)
    finally:
        stop_process(launcher.proc, 40)
        stop_process(server.proc)


def test_the_launcher_gives_up_on_a_child_crashing_on_its_own_but_never_during_an_outage(oom_redis, tmp_path,
                                                                                       monkeypatch) -> None:
    """Given a child that exits at once (a real process), the launcher gives up after 5 restarts in the window
    while Redis serves; while Redis is at maxmemory it restarts it every time, later each time."""
    from shared.settings import Settings
    from worker import launcher

    def exit_at_once(child: launcher.Child, *_: object) -> None:
        child.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
        child.proc.wait()

    monkeypatch.setattr(launcher, "start", exit_at_once)
    settings, client = Settings(oom_redis.url, "env", tmp_path), oom_redis.client()

    crashing = launcher.Child("crashy@test", ["cpu"], None)
    exit_at_once(crashing)
    for _ in range(launcher.RESTART_LIMIT + 1):
        launcher.restart(crashing, settings, "INFO", client)
    assert crashing.given_up

    fill(client)
    reach_maxmemory(client)
    waiting = launcher.Child("waiting@test", ["cpu"], None)
    delays = []
    for _ in range(3 * launcher.RESTART_LIMIT):
        exit_at_once(waiting)
        launcher.restart(waiting, settings, "INFO", client)
        delays.append(waiting.restart_at - time.monotonic())
    assert not waiting.given_up and waiting.proc is None  # to be started again at restart_at
    assert delays[0] < delays[3] and max(delays) <= 5.0
