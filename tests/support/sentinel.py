"""Redis Sentinel for the tests: a primary, its replica and three Sentinels, all the same redis-server binary
(`redis-server CONF --sentinel` is a Sentinel), on free loopback ports, with short timings so a failover takes
seconds, not the default minute. Everything started is stopped by `SentinelSet.stop`, also when starting fails
midway.

With `tls=` (tests/e2e/test_sentinel_tls.py) everything speaks TLS only: the Redis servers and the Sentinels
listen on a TLS port alone (`port 0`), the replica reaches its primary and the Sentinels reach the servers and
each other over TLS (`tls-replication yes`), clients are not asked for certificates; all of them are the
redis-server built with TLS (tests/support/tls.py), and the checks here are TLS clients trusting the CA."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.support.processes import RedisServer, free_port, redis_server_binary, start_redis, stop_process, wait_until


@dataclass(frozen=True)
class TlsFiles:
    """The CA every client trusts and the certificate (with its key) every server of the set presents, and the
    redis-server built with TLS that runs them all."""

    ca: Path
    cert: Path
    key: Path
    binary: str

    def server_args(self) -> tuple[str, ...]:
        return ("--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key), "--tls-ca-cert-file",
                str(self.ca), "--tls-auth-clients", "no", "--tls-replication", "yes")

    def client_kwargs(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca)}

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
    tls: TlsFiles | None = None

    def client(self, password: str | None = None) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=2,
                           **(self.tls.client_kwargs() if self.tls else {}))


@dataclass
class SentinelSet:
    """A primary, a replica and the Sentinels watching them; `url` is the one URL every tensorq process takes."""

    primary: RedisServer
    replica: RedisServer
    sentinels: list[Sentinel] = field(default_factory=list)
    master_name: str = MASTER_NAME
    sentinel_password: str | None = None
    redis_password: str | None = None
    tls: TlsFiles | None = None

    @property
    def url(self) -> str:
        """The plain URL, or over TLS the `sentinels://` one trusting the set's CA."""
        scheme = "sentinels" if self.tls else "sentinel"
        hosts = ";".join(f"{scheme}://127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{hosts}/0?master_name={self.master_name}" + (f"&ssl_ca_certs={self.tls.ca}" if self.tls else "")

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
                replica = _client(self.replica.port, self.redis_password, self.tls)
                return bool(replica.info("replication")["role"] == "master")
            except Exception:
                return False

        wait_until(promoted, timeout_s, "the failover to the replica")

    def stop(self) -> None:
        for s in self.sentinels:
            stop_process(s.proc)
        for server in (self.replica, self.primary):
            stop_process(server.proc)


def start_sentinel_set(tmp: Path, *, replica_args: tuple[str, ...] = (), redis_password: str | None = None,
                       sentinel_password: str | None = None, count: int = 3,
                       tls: TlsFiles | None = None) -> SentinelSet:
    """A primary, a replica of it (started with `replica_args` too) and `count` Sentinels (quorum: a majority),
    each knowing the others and the replica before this returns, so a failover can be elected at once; with
    `tls`, all of them over TLS only."""
    primary = _start_server(tmp / "primary", redis_password, tls=tls)
    # stop() works from here on
    started = SentinelSet(primary, primary, [], MASTER_NAME, sentinel_password, redis_password, tls)
    try:
        started.replica = _start_server(tmp / "replica", redis_password, "--replicaof", "127.0.0.1",
                                        str(primary.port), *replica_args, tls=tls)
        wait_until(lambda: _in_sync(started.replica, redis_password, tls), 15, "the replica's first sync")
        for k in range(count):
            started.sentinels.append(_start_sentinel(tmp / f"sentinel{k}", primary.port, count // 2 + 1,
                                                     redis_password, sentinel_password, tls))
        wait_until(lambda: all(_sees_all(s, count, sentinel_password) for s in started.sentinels), 30,
                   "the Sentinels knowing each other and the replica")
    except BaseException:
        started.stop()
        raise
    return started


def _start_server(tmp: Path, password: str | None, *args: str, tls: TlsFiles | None = None) -> RedisServer:
    """redis-server on a free port; with a password, also the one it asks of its own primary; with `tls`, on a
    TLS port only (its replication too)."""
    if not password and tls is None:
        return start_redis(tmp, None, *args)
    from tests.support.tls import start_secure_redis

    port = free_port()
    userinfo = f":{quote(password, safe='')}@" if password else ""
    auth = ("--requirepass", password, "--masterauth", password) if password else ()
    if tls is None:
        secure = start_secure_redis(tmp, f"redis://{userinfo}127.0.0.1:{port}/0", "--port", str(port), *auth, *args)
    else:
        secure = start_secure_redis(tmp, f"rediss://{userinfo}127.0.0.1:{port}/0?ssl_ca_certs={tls.ca}", "--port",
                                    "0", "--tls-port", str(port), *tls.server_args(), *auth, *args,
                                    binary=tls.binary)
    return RedisServer(port, secure.proc, tmp)


def _in_sync(replica: RedisServer, password: str | None, tls: TlsFiles | None = None) -> bool:
    try:
        return bool(_client(replica.port, password, tls).info("replication").get("master_link_status") == "up")
    except Exception:
        return False


def _client(port: int, password: str | None, tls: TlsFiles | None = None) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2,
                       **(tls.client_kwargs() if tls else {}))


def _start_sentinel(tmp: Path, primary_port: int, quorum: int, redis_password: str | None,
                    sentinel_password: str | None, tls: TlsFiles | None = None) -> Sentinel:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    listen = [f"port {port}"]
    if tls is not None:  # TLS only, to its clients, the other Sentinels and the Redis servers alike
        args = tls.server_args()
        listen = ["port 0", f"tls-port {port}", *(f"{k.lstrip('-')} {v}" for k, v in zip(args[::2], args[1::2],
                                                                                          strict=True))]
    lines = [*listen, "bind 127.0.0.1", f"dir {tmp}", f"logfile {tmp / 'sentinel.log'}",
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
    proc = subprocess.Popen([tls.binary if tls else redis_server_binary(), str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sentinel = Sentinel(port, proc, tmp, tls)

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
