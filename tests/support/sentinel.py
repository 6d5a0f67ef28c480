"""Redis Sentinel for the tests: a primary, its replica and three Sentinels, all the same redis-server binary
(`redis-server CONF --sentinel` is a Sentinel), on free loopback ports, with short timings so a failover takes
seconds, not the default minute. Everything started is stopped by `SentinelSet.stop`, also when starting fails
midway."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.support.processes import RedisServer, free_port, redis_server_binary, start_redis, stop_process, wait_until

MASTER_NAME = "tq-main"
# How long a primary may not answer before a Sentinel calls it down, and how long a failover may take: the
# defaults (30 s, 3 min) would make a test of a failover last minutes.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10_000


@dataclass
class Sentinel:
    port: int
    proc: subprocess.Popen[bytes]
    dir: Path

    def client(self, password: str | None = None) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=2)


@dataclass
class SentinelSet:
    """A primary, a replica and the Sentinels watching them; `url` is the one URL every tensorq process takes."""

    primary: RedisServer
    replica: RedisServer
    sentinels: list[Sentinel] = field(default_factory=list)
    master_name: str = MASTER_NAME
    sentinel_password: str | None = None
    redis_password: str | None = None

    @property
    def url(self) -> str:
        hosts = ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{hosts}/0?master_name={self.master_name}"

    def primary_port(self) -> int | None:
        """The primary's port as a majority of the Sentinels names it now (None while they disagree)."""
        seen = []
        for s in self.sentinels:
            try:
                addr = s.client(self.sentinel_password).sentinel_get_master_addr_by_name(self.master_name)
            except Exception:
                continue
            if addr:
                seen.append(int(addr[1]))
        best = max(set(seen), key=seen.count) if seen else None
        return best if best is not None and seen.count(best) * 2 > len(self.sentinels) else None

    def kill_primary(self) -> float:
        """SIGKILL the primary (no chance to flush or hand over); returns time.monotonic() of the kill."""
        self.primary.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        self.primary.proc.wait()
        return killed_at

    def wait_for_failover(self, timeout_s: float = 30) -> None:
        """Until the Sentinels name the replica as the primary and it says so itself."""
        def promoted() -> bool:
            if self.primary_port() != self.replica.port:
                return False
            try:
                return bool(_client(self.replica.port, self.redis_password).info("replication")["role"] == "master")
            except Exception:
                return False

        wait_until(promoted, timeout_s, "the failover to the replica")

    def stop(self) -> None:
        for s in self.sentinels:
            stop_process(s.proc)
        for server in (self.replica, self.primary):
            stop_process(server.proc)


def start_sentinel_set(tmp: Path, *, replica_args: tuple[str, ...] = (), redis_password: str | None = None,
                       sentinel_password: str | None = None, count: int = 3) -> SentinelSet:
    """A primary, a replica of it (started with `replica_args` too) and `count` Sentinels (quorum: a majority),
    each knowing the others and the replica before this returns, so a failover can be elected at once."""
    primary = _start_server(tmp / "primary", redis_password)
    # stop() works from here on
    started = SentinelSet(primary, primary, [], MASTER_NAME, sentinel_password, redis_password)
    try:
        started.replica = _start_server(tmp / "replica", redis_password, "--replicaof", "127.0.0.1",
                                        str(primary.port), *replica_args)
        wait_until(lambda: _in_sync(started.replica, redis_password), 15, "the replica's first sync")
        for k in range(count):
            started.sentinels.append(_start_sentinel(tmp / f"sentinel{k}", primary.port, count // 2 + 1,
                                                     redis_password, sentinel_password))
        wait_until(lambda: all(_sees_all(s, count, sentinel_password) for s in started.sentinels), 30,
                   "the Sentinels knowing each other and the replica")
    except BaseException:
        started.stop()
        raise
    return started


def _start_server(tmp: Path, password: str | None, *args: str) -> RedisServer:
    """redis-server on a free port; with a password, also the one it asks of its own primary."""
    if not password:
        return start_redis(tmp, None, *args)
    from tests.support.tls import start_secure_redis

    port = free_port()
    secure = start_secure_redis(tmp, f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0", "--port", str(port),
                                "--requirepass", password, "--masterauth", password, *args)
    return RedisServer(port, secure.proc, tmp)


def _in_sync(replica: RedisServer, password: str | None) -> bool:
    try:
        return bool(_client(replica.port, password).info("replication").get("master_link_status") == "up")
    except Exception:
        return False


def _client(port: int, password: str | None) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2)


def _start_sentinel(tmp: Path, primary_port: int, quorum: int, redis_password: str | None,
                    sentinel_password: str | None) -> Sentinel:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [f"port {port}", "bind 127.0.0.1", f"dir {tmp}", f"logfile {tmp / 'sentinel.log'}",
             f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}",
             f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
             f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
             f"sentinel parallel-syncs {MASTER_NAME} 1"]
    if redis_password:
        lines.append(f"sentinel auth-pass {MASTER_NAME} {redis_password}")
    if sentinel_password:  # the Sentinels' own password, which they also use with each other
        lines += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
    conf = tmp / "sentinel.conf"  # a Sentinel rewrites its file as it learns: one of its own each
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([redis_server_binary(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    sentinel = Sentinel(port, proc, tmp)

    def answers() -> bool:
        assert proc.poll() is None, f"sentinel exited; log:\n{_tail(tmp / 'sentinel.log')}"
        try:
            return bool(sentinel.client(sentinel_password).ping())
        except Exception:
            return False

    try:
        wait_until(answers, 15, "redis-sentinel")
    except BaseException:
        stop_process(proc)
        raise
    return sentinel


def _sees_all(s: Sentinel, count: int, password: str | None) -> bool:
    try:
        state = s.client(password).sentinel_master(MASTER_NAME)
    except Exception:
        return False
    return int(state.get("num-other-sentinels", 0)) >= count - 1 and int(state.get("num-slaves", 0)) >= 1


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"
