"""A real Flower for the tests (tests/e2e/test_flower.py, test_flower_revoked.py): started behind basic auth
on a free port, asked over HTTP."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO, free_port, stop_process, tq_env, wait_until

USER, PASSWORD = "tester", "s3cret"


def http_get(url: str, login: tuple[str, str] | None = (USER, PASSWORD), timeout_s: float = 10) -> tuple[int, str]:
    """(status, body) of a GET, with basic auth when `login` is given; error statuses are returned, not raised."""
    headers = {}
    if login is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(login).encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def poll(fetch: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float, what: str) -> Any:
    """`fetch()` until `ok` accepts what it returns; fails showing the last value (events arrive asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s} s; last seen: {str(value)[:2000]}")
        time.sleep(0.2)


@dataclass
class Flower:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str) -> Any:
        status, body = http_get(self.url + path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)


def run_flower(broker: str, home: Path, log: Path, node: str) -> Iterator[Flower]:
    """`tensorq flower --basic-auth tester:s3cret --no-persistent` on a free port, stopped after the yield.
    Ready once /healthcheck answers and `node`'s heartbeat event has arrived: events published before Flower
    subscribed are lost."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "producer", "flower", "--port", str(port),
                                 "--basic-auth", f"{USER}:{PASSWORD}", "--no-persistent"],
                                env=tq_env(broker, home), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    server = Flower(f"http://127.0.0.1:{port}", proc, log)
    try:
        def healthy() -> bool:
            assert proc.poll() is None, f"flower exited with {proc.returncode}; log:\n{log.read_text()}"
            try:
                return http_get(server.url + "/healthcheck", login=None, timeout_s=2)[0] == 200
            except OSError:  # not listening yet
                return False

        wait_until(healthy, 60, "flower")
        online = f'flower_worker_online{{worker="{node}"}} 1.0'
        poll(lambda: http_get(server.url + "/metrics")[1], lambda m: online in m, 20,
             f"Flower received no heartbeat event from {node}")
        yield server
    finally:
        stop_process(proc)
