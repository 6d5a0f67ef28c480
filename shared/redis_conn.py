"""Opening Redis the one way every tensorq process does, with timeouts that fail fast.

TLS: a `rediss://` URL carries its certificate options in the query, and the same URL then works for every
process (redis-py here, Celery's producer and workers, Flower through shared.celery_app):

    rediss://:PASSWORD@redis.example:6380/0?ssl_ca_certs=/etc/tensorq/ca.pem

`tls_options` is the one reader of those options. The server's certificate is checked unless the URL says
`ssl_cert_reqs=none` outright (Celery's Redis transport would otherwise fall back to no checks at all).
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared import defaults
from shared.errors import BrokerUnreachable
from shared.settings import Settings

if TYPE_CHECKING:
    import redis

CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE,
             "cert_required": ssl.CERT_REQUIRED, "cert_optional": ssl.CERT_OPTIONAL, "cert_none": ssl.CERT_NONE}
# The TLS options a broker URL may carry: what redis-py's SSLConnection and kombu's broker_use_ssl both take.
TLS_PATH_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_check_hostname", *TLS_PATH_OPTIONS)
BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def tls_options(url: str) -> dict | None:
    """The TLS options of a `rediss://` URL (None for any other scheme), as redis-py and kombu take them.

    ssl_cert_reqs: required (the default), optional or none (also CERT_REQUIRED etc.); ssl_ca_certs,
    ssl_ca_path, ssl_certfile, ssl_keyfile: paths; ssl_check_hostname: true/false (redis-py's default, true,
    when absent). Raises ValueError for an unknown ssl_* option, a bad value, or ssl_* on a `redis://` URL.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    given = {k: v for k, v in query.items() if k.startswith("ssl_")}
    if parts.scheme != "rediss":
        if given:
            raise ValueError(f"{', '.join(sorted(given))}: TLS options need a rediss:// URL")
        return None
    unknown = sorted(set(given) - set(TLS_OPTIONS))
    if unknown:
        raise ValueError(f"unknown TLS option {', '.join(unknown)} (known: {', '.join(TLS_OPTIONS)})")
    reqs = given.get("ssl_cert_reqs", "required")
    if reqs.lower() not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={reqs!r}: expected required, optional or none")
    options: dict = {"ssl_cert_reqs": CERT_REQS[reqs.lower()]}
    options.update({k: given[k] for k in TLS_PATH_OPTIONS if given.get(k)})
    if "ssl_check_hostname" in given:
        flag = given["ssl_check_hostname"].lower()
        if flag not in BOOLEANS:
            raise ValueError(f"ssl_check_hostname={given['ssl_check_hostname']!r}: expected true or false")
        options["ssl_check_hostname"] = BOOLEANS[flag]
    return options


def _check_readable(tls: dict | None) -> None:
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


def connect(settings: Settings, check: bool = True) -> redis.Redis:
    """A client for the settings' broker; with `check`, it has answered a PING or BrokerUnreachable is raised."""
    import redis

    try:
        tls = tls_options(settings.broker_url)
        _check_readable(tls)
        client = redis.Redis.from_url(
            without_tls_options(settings.broker_url),
            socket_connect_timeout=defaults.CONNECT_TIMEOUT_S,
            socket_timeout=defaults.SOCKET_TIMEOUT_S,
            health_check_interval=30,
            **(tls or {}),
        )
    except ValueError as e:
        raise BrokerUnreachable(f"bad broker URL {settings.masked_broker_url}: {e}") from e
    if check:
        ping(client, settings)
    return client


def ping(client: redis.Redis, settings: Settings) -> None:
    import redis

    where = settings.masked_broker_url
    try:
        client.ping()
    except redis.AuthenticationError as e:
        raise BrokerUnreachable(f"broker at {where} refused the password: {e}") from e
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        problem = _tls_problem(e)
        if problem:  # the server is there; the hint about starting one would mislead
            raise BrokerUnreachable(f"broker unreachable at {where}: {problem}") from e
        raise BrokerUnreachable(unreachable_message(settings)) from e
    except redis.ResponseError as e:
        raise BrokerUnreachable(f"broker at {where} answered with an error: {e}") from e


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
        seen = seen.__cause__ or seen.__context__
    return "TLS handshake failed (certificate verify failed)" if "CERTIFICATE_VERIFY_FAILED" in str(error) else None


def unreachable_message(settings: Settings) -> str:
    hint = {
        "default": " (no `tensorq up` running; start one with `tensorq up --detach` or pass --broker)",
        "stack": " (recorded by `tensorq up`; is it still running? try `tensorq up --detach`)",
    }.get(settings.broker_source, "")
    return f"broker unreachable at {settings.masked_broker_url}{hint}"
