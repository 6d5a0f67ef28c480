"""Opening Redis the one way every tensorq process does, with timeouts that fail fast.

TLS: a `rediss://` URL carries its certificate options in the query, and the same URL then works for every
process (redis-py here, Celery's producer and workers, Flower through shared.celery_app):

    rediss://:PASSWORD@redis.example:6380/0?ssl_ca_certs=/etc/tensorq/ca.pem

`tls_options` is the one reader of those options. The server's certificate is checked unless the URL says
`ssl_cert_reqs=none` outright (Celery's Redis transport would otherwise fall back to no checks at all).

Sentinel: a `sentinel://` URL (`sentinels://` over TLS, with the same options; shared/sentinel.py reads the rest)
gives a client whose every connection asks the Sentinels where the primary is (redis-py's Sentinel.master_for),
so after a failover the next command, or the retry of a failed one, reaches the new primary.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared import broker_errors, defaults, sentinel
from shared.errors import BadInput, BrokerUnreachable
from shared.settings import Settings, check_sentinel_url, password_problem, scrub

if TYPE_CHECKING:
    import redis

CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE,
             "cert_required": ssl.CERT_REQUIRED, "cert_optional": ssl.CERT_OPTIONAL, "cert_none": ssl.CERT_NONE}
# The TLS options a broker URL may carry: what redis-py's SSLConnection and kombu's broker_use_ssl both take.
TLS_PATH_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_check_hostname", *TLS_PATH_OPTIONS)
TLS_SCHEMES = ("rediss", "sentinels")
BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def tls_options(url: str) -> dict[str, Any] | None:
    """The TLS options of a `rediss://` or `sentinels://` URL (None for any other scheme), as redis-py and kombu
    take them.

    ssl_cert_reqs: required (the default), optional or none (also CERT_REQUIRED etc.); ssl_ca_certs,
    ssl_ca_path, ssl_certfile, ssl_keyfile: paths; ssl_check_hostname: true/false (redis-py's default, true,
    when absent). Raises ValueError for an unknown ssl_* option, a bad value, or ssl_* on a `redis://` URL.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    given = {k: v for k, v in query.items() if k.startswith("ssl_")}
    if parts.scheme not in TLS_SCHEMES:
        if given:
            raise ValueError(f"{', '.join(sorted(given))}: TLS options need a rediss:// URL "
                             "(sentinels:// for Sentinels)")
        return None
    unknown = sorted(set(given) - set(TLS_OPTIONS))
    if unknown:
        raise ValueError(f"unknown TLS option {', '.join(unknown)} (known: {', '.join(TLS_OPTIONS)})")
    reqs = given.get("ssl_cert_reqs", "required")
    if reqs.lower() not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={reqs!r}: expected required, optional or none")
    options: dict[str, Any] = {"ssl_cert_reqs": CERT_REQS[reqs.lower()]}
    options.update({k: given[k] for k in TLS_PATH_OPTIONS if given.get(k)})
    if "ssl_check_hostname" in given:
        flag = given["ssl_check_hostname"].lower()
        if flag not in BOOLEANS:
            raise ValueError(f"ssl_check_hostname={given['ssl_check_hostname']!r}: expected true or false")
        options["ssl_check_hostname"] = BOOLEANS[flag]
    return options


def _check_readable(tls: dict[str, Any] | None) -> None:
    """ValueError naming the TLS file (or ssl_ca_path folder) that cannot be read; ssl would only say
    'No such file or directory', without saying which."""
    for key in TLS_PATH_OPTIONS:
        path = (tls or {}).get(key)
        if path is None:
            continue
        is_right_kind = os.path.isdir(path) if key == "ssl_ca_path" else os.path.isfile(path)
        if not is_right_kind or not os.access(path, os.R_OK):
            kind = "folder" if key == "ssl_ca_path" else "file"
            raise ValueError(f"{key}: no readable {kind} {path}")


def without_tls_options(url: str) -> str:
    """The URL less its ssl_* query parameters: what goes to a client that is handed `tls_options` itself,
    so no library reads the query its own way."""
    parts = urlsplit(url)
    if "ssl_" not in parts.query:
        return url
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("ssl_")]
    return urlunsplit(parts._replace(query=urlencode(kept)))


# The brokers this process opened, newest last: the CLI names the broker when a command fails midway.
_opened: list[tuple[Settings, redis.Redis]] = []


def connect(settings: Settings, check: bool = True) -> redis.Redis:
    """A client for the settings' broker; with `check`, it has answered a PING or BrokerUnreachable is raised.

    The URL is checked (and every message about it masked) before any library parses it; the check's
    connection waits CONNECT_TIMEOUT_S at most for each reply, so a server that accepts and says nothing is
    reported in seconds; later commands get SOCKET_TIMEOUT_S."""
    import redis

    if settings.broker_source == "down":
        raise BrokerUnreachable(down_message(settings))
    if sentinel.is_sentinel(settings.broker_url):
        check_sentinel_url(settings.broker_url)  # BadInput (exit 2), as resolve() says it
    problem = password_problem(settings.broker_url)
    if problem:
        raise BrokerUnreachable(f"bad broker URL {settings.masked_broker_url}: {problem}")
    timeouts = {"socket_connect_timeout": defaults.CONNECT_TIMEOUT_S,
                "socket_timeout": defaults.CONNECT_TIMEOUT_S if check else defaults.SOCKET_TIMEOUT_S}
    try:
        tls = tls_options(settings.broker_url)
        _check_readable(tls)
        if sentinel.is_sentinel(settings.broker_url):
            client = sentinel_client(sentinel.parse(settings.broker_url), tls, timeouts)
        else:
            client = redis.Redis.from_url(without_tls_options(settings.broker_url), health_check_interval=30,
                                          **timeouts, **(tls or {}))
    except (ValueError, TypeError) as e:
        problem = scrub(str(e), settings.broker_url)
        if sentinel.is_sentinel(settings.broker_url):  # a usage error, as check_sentinel_url's (exit 2)
            raise BadInput(f"bad broker URL {settings.masked_broker_url}: {problem}") from e
        raise BrokerUnreachable(f"bad broker URL {settings.masked_broker_url}: {problem}") from e
    if check:
        ping(client, settings)
        client.connection_pool.connection_kwargs["socket_timeout"] = defaults.SOCKET_TIMEOUT_S
    _opened.append((settings, client))
    del _opened[:-4]
    return client


def sentinel_client(url: sentinel.SentinelUrl, tls: dict[str, Any] | None, timeouts: dict[str, float]
                    ) -> redis.Redis:
    """A client of the primary the Sentinels name: each new connection asks them (the first that answers, and
    that sees the primary up), so none outlives a failover for long; a reply READONLY from a primary demoted
    meanwhile is a lost connection (redis-py's SentinelManagedConnection), retried on the new one."""
    from redis.sentinel import Sentinel

    # redis-py leaves Sentinel unannotated
    sentinels = Sentinel(list(url.sentinels), sentinel_kwargs=url.sentinel_kwargs(tls),  # type: ignore[no-untyped-call]
                         **timeouts)
    client: redis.Redis = sentinels.master_for(url.master_name, health_check_interval=30,  # type: ignore[no-untyped-call]
                                               **url.master_kwargs(tls))
    return client


def ping(client: redis.Redis, settings: Settings) -> None:
    """PING on a fresh connection from the client's pool, which then serves ordinary commands (its socket
    timeout raised to SOCKET_TIMEOUT_S)."""
    import redis
    from redis.sentinel import MasterNotFoundError

    where = settings.masked_broker_url
    if sentinel.is_sentinel(settings.broker_url):  # what waiting cannot mend is said at once, not after retries
        why = no_primary(settings, client)
        if why is not None and not why[1]:
            raise BrokerUnreachable(why[0])
    conn = None
    try:
        conn = client.connection_pool.get_connection()
        conn.send_command("PING")  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        conn.read_response()
    except MasterNotFoundError as e:
        why = no_primary(settings, client)
        raise BrokerUnreachable(why[0] if why else unreachable_message(settings)) from e
    except redis.AuthenticationError as e:
        raise BrokerUnreachable(f"broker at {where} refused the password: {scrub(str(e), settings.broker_url)}") from e
    except redis.InvalidResponse as e:
        raise BrokerUnreachable(f"broker at {where} does not speak the Redis protocol (is it a Redis server?)") from e
    except redis.TimeoutError as e:
        problem = _tls_problem(e)
        if problem:
            raise BrokerUnreachable(f"broker unreachable at {where}: {problem}") from e
        if "connecting" in str(e):  # nothing answered the connect: down, or a host that cannot be reached
            raise BrokerUnreachable(unreachable_message(settings)) from e
        raise BrokerUnreachable(f"broker at {where} did not answer within {defaults.CONNECT_TIMEOUT_S:g} s "
                                "(is it a Redis server, and is the URL's scheme, redis:// or rediss://, right?)") from e
    except (redis.ConnectionError, OSError) as e:
        problem = _tls_problem(e)
        if problem:  # the server is there; the hint about starting one would mislead
            raise BrokerUnreachable(f"broker unreachable at {where}: {problem}") from e
        if not _refused(e):  # something answered, then hung up: a server that is not Redis (or not plain TCP)
            raise BrokerUnreachable(f"broker unreachable at {where}: {scrub(str(e), settings.broker_url)}") from e
        raise BrokerUnreachable(unreachable_message(settings)) from e
    except redis.ResponseError as e:
        raise BrokerUnreachable(failure_message(settings, e, client)) from e
    finally:
        if conn is not None:
            conn.socket_timeout = defaults.SOCKET_TIMEOUT_S
            if conn.is_connected:
                conn.update_current_socket_timeout(defaults.SOCKET_TIMEOUT_S)
            client.connection_pool.release(conn)


def no_primary(settings: Settings, client: redis.Redis) -> tuple[str, bool] | None:
    """None when a Sentinel names the primary now; else why not, and whether waiting could help: not when they
    refuse the password, none answers, or none knows a primary by that name (a wrong master_name); yes when
    they know it but see it down (a failover under way, which redis-py's retries of the connection ride out).
    Asked once, of each Sentinel: redis-py's own error lists their failures as reprs of its clients."""
    import redis

    pool: Any = client.connection_pool  # a SentinelConnectionPool: its Sentinels' clients
    name, where = pool.service_name, settings.masked_broker_url
    answered, refused, known, tls_problem = 0, False, False, None
    for one in pool.sentinel_manager.sentinels:
        try:
            state = one.sentinel_masters().get(name)
        except redis.AuthenticationError:
            refused = True
            continue
        except redis.RedisError as e:  # a sentinels:// handshake that failed (a wrong CA) is said as rediss://'s
            tls_problem = tls_problem or _tls_problem(e)
            continue
        answered += 1
        if state and pool.sentinel_manager.check_master_state(state, name):
            return None
        known = known or bool(state)
    if refused:
        return f"the Sentinels of {where} refused the password (sentinel_password=, their own requirepass)", False
    if not answered:
        return (f"broker unreachable at {where}: {tls_problem}" if tls_problem
                else unreachable_message(settings)), False
    if not known:
        return f"no Sentinel of {where} knows a primary named {name!r} (is master_name right?)", False
    return f"the Sentinels of {where} see the primary {name!r} down (a failover under way?)", True


def _refused(error: BaseException) -> bool:
    """Nothing listens there (or nothing could be reached): not a server that answered something else."""
    text = str(error)
    return any(t in text for t in ("refused", "Name or service not known", "No route", "unreachable",
                                   "Temporary failure in name resolution", "timed out", "Errno 111", "Errno -2"))


def failure_message(settings: Settings, error: BaseException, client: redis.Redis | None = None) -> str:
    """One line for a broker error met midway: `broker at redis://…: out of memory (maxmemory 30 MB)` for one
    that means "not now", else the error itself; the password masked either way."""
    reason = broker_errors.not_now(error)
    if reason is None:
        said = scrub(str(error), settings.broker_url)
        return f"broker at {settings.masked_broker_url} answered with an error: {said}"
    if reason == broker_errors.NOT_NOW_CLASSES["ConnectionError"]:
        return unreachable_message(settings)
    return f"broker at {settings.masked_broker_url}: {broker_errors.detail(client, reason)}"


def last_failure_message(error: BaseException) -> str:
    """`failure_message` for the broker this process opened last (the CLI's catch-all has no settings)."""
    if not _opened:
        reason = broker_errors.not_now(error) or "error"
        return f"broker unreachable: {scrub(reason)}"
    settings, client = _opened[-1]
    return failure_message(settings, error, client)


def down_message(settings: Settings) -> str:
    return (f"tensorq is down (`tensorq down` stopped its broker, {settings.masked_broker_url}); start it with "
            "`tensorq up --detach`, or pass --broker")


def _tls_problem(error: BaseException) -> str | None:
    """What went wrong in the TLS handshake (an untrusted certificate, say), or None when the failure is
    something else (nothing listening, a timeout)."""
    seen: BaseException | None = error
    for _ in range(8):  # a cause chain is short; the bound guards against a cycle
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS handshake failed (certificate verify failed: {seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed ({seen.reason or seen})"
        if "handshake operation timed out" in str(seen):
            return "TLS handshake failed (no answer to it: is this a plain redis:// port?)"
        seen = seen.__cause__ or seen.__context__
    return "TLS handshake failed (certificate verify failed)" if "CERTIFICATE_VERIFY_FAILED" in str(error) else None


def unreachable_message(settings: Settings) -> str:
    if settings.broker_source == "down":
        return down_message(settings)
    hint = {
        "default": " (no `tensorq up` running; start one with `tensorq up --detach` or pass --broker)",
        "stack": " (recorded by `tensorq up`; is it still running? try `tensorq up --detach`)",
    }.get(settings.broker_source, "")
    return f"broker unreachable at {settings.masked_broker_url}{hint}"
