"""Fixtures that start real processes: a redis-server on a free port, real `tensorq worker` launchers, Flower,
a TLS redis-server; and the CLI, in-process (`cli`) or as a process (`tq`). The helpers live in tests/support/.

Nothing here touches the machine's own Redis (port 6379 may be taken, by something we must not disturb):
every test gets TENSORQ_BROKER_URL pointing at its own server, or at a closed port, and its own TENSORQ_HOME.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Cli
from tests.support.flower import Flower, run_flower
from tests.support.processes import (  # noqa: F401 - importable from here too, as before tests/support/
    CLOSED_BROKER,
    REPO,
    Launcher,
    RedisServer,
    Tq,
    free_port,
    redis_server_binary,
    start_launcher,
    start_redis,
    stop_process,
    tq_env,
    wait_until,
)
from tests.support.tls import (  # noqa: F401 - as above
    SecureRedis,
    Tls,
    make_ca,
    make_server_cert,
    start_secure_redis,
    start_tls_redis,
    tls_redis_server_binary,
)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process code sees a private TENSORQ_HOME and, unless a test says otherwise, a closed broker."""
    monkeypatch.setenv("TENSORQ_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("TENSORQ_BROKER_URL", CLOSED_BROKER)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    stop_process(server.proc)


@pytest.fixture(scope="session")
def tq_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tq-home")


@pytest.fixture(scope="session")
def tq(redis_server: RedisServer, tq_home: Path) -> Tq:
    """The CLI as a subprocess, for tests of what only a process shows (start-up, exec, signals, terminals)."""
    return Tq(tq_env(redis_server.url, tq_home))


@pytest.fixture(scope="session")
def cli(redis_server: RedisServer, tq_home: Path) -> Cli:
    """The CLI in this process (click's CliRunner) on the same broker and home as `tq`: output and exit codes."""
    return Cli(tq_env(redis_server.url, tq_home))


@pytest.fixture(scope="session")
def registry(redis_server: RedisServer) -> Any:
    from shared.keys import Keys
    from shared.registry import NodeRegistry

    return NodeRegistry(redis_server.client(), Keys())


@pytest.fixture(scope="session")
def cpu_worker(redis_server: RedisServer, tq_home: Path, registry: Any,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """One real CPU worker (`tensorq worker --gpus none`) for the whole session."""
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    launcher = start_launcher(redis_server.url, tq_home, log, "--gpus", "none", registry=registry)
    yield launcher
    stop_process(launcher.proc, 40)


@pytest.fixture
def client(redis_server: RedisServer, tq_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An in-process Python client on the test broker."""
    from producer.client import Client

    monkeypatch.setenv("TENSORQ_BROKER_URL", redis_server.url)
    return Client(redis_server.url)


@pytest.fixture(scope="session")
def node(cpu_worker: Launcher, registry: Any) -> str:
    """The session worker's Celery node name, as its heartbeat records it (cpu@<host>)."""
    names = [n["name"] for n in cpu_worker.nodes(registry)]
    assert len(names) == 1 and names[0].startswith("cpu@"), names
    return str(names[0])


@pytest.fixture(scope="module")
def flower(redis_server: RedisServer, tq_home: Path, node: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flower]:
    """A Flower of the module's own (tests/support/flower.py), started before any job it is asked about, so
    it receives their task events."""
    yield from run_flower(redis_server.url, tq_home, tmp_path_factory.mktemp("logs") / "flower.log", node)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    """One TLS redis-server with a password for the session (tests/support/tls.py)."""
    server = start_tls_redis(tmp_path_factory.mktemp("tls"))
    try:
        yield server
    finally:
        stop_process(server.redis.proc)
