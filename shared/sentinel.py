"""Redis Sentinel URLs: the one URL that names the Sentinels, the primary's name, the database, both passwords and
TLS, read here for every tensorq process (redis-py's store client in shared/redis_conn.py, Celery's transport and
Flower in shared/celery_app.py):

    sentinel://[[USER]:PASSWORD@]HOST[:PORT];sentinel://HOST[:PORT];.../DB?master_name=NAME[&sentinel_password=P]
    sentinels://...   the same over TLS, to the Sentinels and to Redis, with rediss://'s ssl_* options

Each Sentinel is one `sentinel://` (port 26379 when left out); the database and the query follow the last one
(a `/DB` on any other must agree). The userinfo, or `password=`/`username=`, is Redis's own (the primary's and
the replicas' requirepass or ACL user), as in a redis:// URL; `sentinel_password=`/`sentinel_username=` are the
Sentinels' (their own requirepass), which redis-py sends only when given. The TLS options (`ssl_ca_certs`, ...)
are read by shared/redis_conn.py `tls_options`, the one reader of them.

Messages here never quote the URL: callers put the masked URL in front (shared/settings.py masks it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from shared import defaults
from shared.errors import BadInput

# scheme -> whether it speaks TLS
SCHEMES = {"sentinel": False, "sentinels": True}
DEFAULT_PORT = 26379
# What a Sentinel URL's query may hold besides the TLS options (ssl_*), and what each is.
PARAMS = {
    "master_name": "the name the Sentinels know the primary by (required)",
    "password": "Redis's password, as the userinfo's",
    "username": "Redis's ACL user, as the userinfo's",
    "sentinel_password": "the Sentinels' own password (their requirepass)",
    "sentinel_username": "the Sentinels' ACL user",
}
# Between two Sentinels: a `;` that starts the next one (a `;` inside a password is then still the password's).
_NEXT = re.compile(r";(?=sentinels?://)", re.IGNORECASE)


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int
    tls: bool
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def sentinel_kwargs(self, tls: dict[str, Any] | None) -> dict[str, Any]:
        """What redis-py opens each Sentinel with (its `sentinel_kwargs`, for the store, kombu and Flower alike):
        the Sentinels' own credentials, TLS as the primary's, and the timeouts: a Sentinel answers at once or is
        down, so each is given CONNECT_TIMEOUT_S and asked once (redis-py then asks the next; the primary's
        connection, which retries, asks them all again), never retried on its own."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs: dict[str, Any] = {"socket_connect_timeout": defaults.CONNECT_TIMEOUT_S,
                                  "socket_timeout": defaults.CONNECT_TIMEOUT_S, "retry": Retry(NoBackoff(), 0)}
        kwargs.update({k: v for k, v in (("username", self.sentinel_username),
                                         ("password", self.sentinel_password)) if v is not None})
        if self.tls:
            kwargs.update(ssl=True, **(tls or {}))
        return kwargs

    def master_kwargs(self, tls: dict[str, Any] | None) -> dict[str, Any]:
        """What redis-py opens the primary with, beyond timeouts: the database, Redis's credentials, TLS."""
        kwargs: dict[str, Any] = {"db": self.db}
        kwargs.update({k: v for k, v in (("username", self.username), ("password", self.password)) if v is not None})
        if self.tls:
            kwargs.update(ssl=True, **(tls or {}))
        return kwargs

    def kombu_url(self) -> str:
        """The URL kombu's Sentinel transport reads: every Sentinel with Redis's credentials and the database,
        as kombu switches to the next one on a failed connect and takes both from whichever it is on."""
        userinfo = ""
        if self.password is not None or self.username is not None:
            userinfo = quote(self.username or "", safe="")
            userinfo += f":{quote(self.password, safe='')}@" if self.password is not None else "@"
        return ";".join(f"sentinel://{userinfo}{_host(host)}:{port}/{self.db}" for host, port in self.sentinels)


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES if "://" in url else False


def elements(url: str) -> list[str]:
    """The URL's Sentinels as written, one `sentinel://...` each (the last with the database and query)."""
    return _NEXT.split(url)


def parse(url: str) -> SentinelUrl:
    """The URL read whole, or BadInput saying what is wrong with it (never quoting it: it holds passwords)."""
    parts = elements(url)
    schemes = {p.split("://", 1)[0].lower() for p in parts}
    if len(schemes) > 1:
        raise BadInput("every Sentinel must have the same scheme (sentinel:// or sentinels://, not both)")
    [scheme] = schemes
    sentinels, dbs, users, query = [], set(), set(), {}
    for k, part in enumerate(parts, start=1):
        split = urlsplit(part)
        if split.query and k < len(parts):
            raise BadInput(f"Sentinel {k}: the query (?master_name=...) goes after the last Sentinel")
        if split.fragment:
            raise BadInput(f"Sentinel {k}: a URL fragment (#...) is not allowed")
        host, port = _address(split, k)
        sentinels.append((host, port))
        if split.path not in ("", "/"):
            dbs.add(_db(split.path, k))
        if "@" in split.netloc:
            users.add((_decoded(split.username), _decoded(split.password)))
        if split.query:
            query = _query(split.query)
    if len(dbs) > 1:
        raise BadInput(f"the Sentinels name different databases ({', '.join(map(str, sorted(dbs)))})")
    if len(users) > 1:
        raise BadInput("the Sentinels carry different Redis credentials: give them once, on the first")
    tls_given = sorted(k for k in query if k.startswith("ssl_"))
    if tls_given and not SCHEMES[scheme]:
        raise BadInput(f"{', '.join(tls_given)}: TLS options need sentinels:// (sentinel:// is plain TCP)")
    username, password = users.pop() if users else (None, None)
    username, password = _one("username", username, query), _one("password", password, query)
    name = query.get("master_name", "")
    if not name:
        raise BadInput("no master_name: add ?master_name=NAME, the name the Sentinels know the primary by")
    if any(c.isspace() for c in name):
        raise BadInput(f"master_name={name!r}: no spaces")
    return SentinelUrl(tuple(sentinels), name, dbs.pop() if dbs else 0, SCHEMES[scheme], username or None,
                       password or None, query.get("sentinel_username") or None,
                       query.get("sentinel_password") or None)


def _address(split: Any, k: int) -> tuple[str, int]:
    try:
        port = split.port
    except ValueError:  # not a number, or out of range
        raise BadInput(f"Sentinel {k}: the port must be a number from 1 to 65535") from None
    host = split.hostname
    if not host:
        raise BadInput(f"Sentinel {k}: no host (expected sentinel://HOST[:PORT])")
    return host, port or DEFAULT_PORT


def _db(path: str, k: int) -> int:
    raw = path.lstrip("/")
    if not raw.isdigit():
        raise BadInput(f"Sentinel {k}: the database must be a number (/0, /1, ...), not {raw!r}")
    return int(raw)


def _query(raw: str) -> dict[str, str]:
    items = parse_qsl(raw, keep_blank_values=True)
    unknown = sorted({k for k, _ in items if k not in PARAMS and not k.startswith("ssl_")})
    if unknown:
        raise BadInput(f"unknown parameter {', '.join(unknown)} (known: {', '.join(PARAMS)} and the ssl_* "
                       "TLS options)")
    return dict(items)


def _one(name: str, from_userinfo: str | None, query: dict[str, str]) -> str | None:
    """Redis's username or password, from the userinfo or the query: both may say it, if they agree."""
    given = query.get(name)
    if from_userinfo and given is not None and given != from_userinfo:
        raise BadInput(f"the userinfo and {name}= give different Redis {name}s")
    return from_userinfo if from_userinfo else given


def _decoded(value: str | None) -> str | None:
    return None if value is None else unquote(value)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # an IPv6 address, bracketed again
