"""Which broker errors mean "not now": the one table the worker, the launcher and the CLI all consult.

A "not now" error (Redis refused or dropped the connection, timed out, is out of memory, loading its data
set, a read-only replica after a failover, busy running a script, ...) never fails a job and never ends a
worker process: the worker waits for Redis and goes on; the CLI says it in one line and exits 3. Any other
Redis error (a wrong password, a bad certificate, a server that is not Redis, a wrong command) is not
waited out, since waiting would not help.

This module imports no redis: errors are matched by class name along the raised class's MRO, so the
builtin ConnectionRefusedError (a ConnectionError) and socket.timeout (a TimeoutError) match too.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from shared import defaults

# redis-py's exception classes that mean "not now", most specific first: what each tells a user.
NOT_NOW_CLASSES: dict[str, str] = {
    "BusyLoadingError": "loading its data set",
    "OutOfMemoryError": "out of memory",
    "ReadOnlyError": "read-only (a replica: is a failover under way?)",
    "MasterDownError": "its master is down",
    "ClusterDownError": "the cluster is down",
    "TryAgainError": "asks to try again (a cluster resharding)",
    "MaxConnectionsError": "no free connection in the pool",
    # redis-py's Sentinel client, while no Sentinel names a primary that is up: the election of a new one
    "MasterNotFoundError": "no primary named by the Sentinels (a failover under way?)",
    "TimeoutError": "timed out",
    "ConnectionError": "the connection failed",  # refused, reset, closed mid-reply
}
# Error replies redis-py raises as a plain ResponseError, by their code: the reply's first word, or, inside a
# Lua script's error, the code Redis 6 writes after a "-" ("... @user_script: 3: -OOM command not allowed").
NOT_NOW_REPLIES: dict[str, str] = {
    "OOM": "out of memory",
    "LOADING": "loading its data set",
    "READONLY": "read-only (a replica: is a failover under way?)",
    "BUSY": "busy running a script",
    "MASTERDOWN": "its master is down",
    "CLUSTERDOWN": "the cluster is down",
    "TRYAGAIN": "asks to try again (a cluster resharding)",
    "MISCONF": "refusing writes (it cannot save its snapshot to disk)",
    "NOREPLICAS": "refusing writes (not enough replicas)",
}
# Never "not now", though redis-py files some of them under ConnectionError: waiting would not help.
PERMANENT_CLASSES = ("AuthenticationError", "AuthorizationError", "ExternalAuthProviderError", "NoPermissionError",
                     "InvalidResponse", "SSLError", "CertificateError")
PERMANENT_TEXT = ("SSL", "certificate", "wrong version number")  # TLS trouble, which redis-py reports as text
T = TypeVar("T")
P = ParamSpec("P")
_REPLY_CODE = re.compile(r"(?:^|: -|^-)([A-Z]+)\b")
# A write that never changes anything (LPUSHX on a key that does not exist) but that Redis refuses exactly
# when it refuses writes: out of memory, read-only, loading, busy, master down.
WRITE_PROBE_KEY = "_tensorq.write-probe"


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    for _ in range(8):  # a cause chain is short; the bound guards against a cycle
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def _names(error: BaseException) -> list[str]:
    """The names of the error's classes that speak for a broker: redis-py's, and an OS socket error's (one with
    an errno: a refused or reset connection), never a bare builtin TimeoutError a caller raised itself."""
    is_socket_error = isinstance(error, OSError) and error.errno is not None
    return [c.__name__ for c in type(error).__mro__
            if c.__module__.startswith(("redis", "kombu")) or (is_socket_error and issubclass(c, OSError))]


def not_now(error: BaseException) -> str | None:
    """What keeps the broker from serving now ("out of memory"), when `error` (or one it was raised from)
    means it will serve again; None for any other error."""
    chain = list(_chain(error))
    for e in chain:
        classes = {c.__name__ for c in type(e).__mro__}
        if classes & set(PERMANENT_CLASSES) or any(t in str(e) for t in PERMANENT_TEXT):
            return None
    for e in chain:
        names = _names(e)
        if "ResponseError" in names:  # a reply: its code says more than its class ("ERR Error running script")
            codes = [getattr(e, "status_code", None), *_REPLY_CODE.findall(str(e))]
            for code in codes:
                if code in NOT_NOW_REPLIES:
                    return NOT_NOW_REPLIES[code]
        for name, reason in NOT_NOW_CLASSES.items():
            if name in names:
                return reason
    return None


def probe(client: Any) -> str | None:
    """None when the broker accepts writes now; else what keeps it from them. Raises any other error."""
    try:
        client.lpushx(WRITE_PROBE_KEY, "x")
    except Exception as e:
        reason = not_now(e)
        if reason is None:
            raise
        return reason
    return None


def detail(client: Any, reason: str) -> str:
    """The reason with what a user can act on: `out of memory (maxmemory 30 MB)`. Best effort: the reason
    alone when the server will not say."""
    if reason != NOT_NOW_REPLIES["OOM"] or client is None:
        return reason
    try:
        maxmemory = int(client.info("memory").get("maxmemory") or 0)
    except Exception:
        return reason
    return f"{reason} (maxmemory {maxmemory / 2**20:.0f} MB)" if maxmemory else reason


def backoff_s(attempt: int) -> float:
    """Seconds to wait before try `attempt` (0, 1, ...) at a broker that is not serving: doubling, capped."""
    return min(defaults.BROKER_RETRY_MAX_S, defaults.BROKER_RETRY_START_S * 2.0 ** min(attempt, 16))


class RideOut:
    """Runs the calls of something that waits (`tensorq wait`, `watch`: reads that block and repeat), riding out a
    broker that is not serving, a failover included, for `limit_s` in a row at most; then the error is raised, as
    any command would have raised it at once."""

    def __init__(self, limit_s: float = defaults.BROKER_RIDE_OUT_S) -> None:
        self.limit_s = limit_s
        self.since: float | None = None  # when the calls began to fail, while they do

    def __call__(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call(*args, **kwargs)`, again after each "not now" error until they have lasted `limit_s`."""
        for attempt in itertools.count():
            try:
                result = call(*args, **kwargs)
            except Exception as e:
                now = time.monotonic()
                self.since = self.since or now
                if not_now(e) is None or now - self.since > self.limit_s:
                    raise
                time.sleep(backoff_s(attempt))
                continue
            self.since = None
            return result
        raise AssertionError("unreachable")  # itertools.count() never ends
