"""Settings, resolved once and passed down: flag > env `TENSORQ_*` > the `tensorq up` record > defaults."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from shared import defaults, sentinel
from shared.errors import BadInput
from shared.vocab import Kind

STACK_RECORD_NAME = "stack.json"
# Left by `tensorq down`: commands without --broker then say tensorq is down rather than fall back to the
# default Redis on 6379, which may be the machine's own (a stray submit would enqueue there).
DOWN_RECORD_NAME = "stack.down.json"
# Query parameters whose values are secrets: masked in every message, like the URL's password.
SECRET_QUERY_KEYS = ("password", "ssl_password", "sentinel_password")
# `key=` of a secret parameter and its value: up to the next `&name=` (an unencoded `&` stays masked).
_SECRET_QUERY = re.compile(rf"(?i)([?&](?:{'|'.join(SECRET_QUERY_KEYS)})=)(?:[^&]|&(?![\w.-]+=))*")
# Every secret met in a broker URL in this process: scrub() takes them out of any message.
_SECRETS: set[str] = set()
# Retention by kind, the one place it differs: a kind named here has a setting of its own (the environment
# variable, seconds; `0` or `none` keeps its jobs forever) and a default. Any kind is kept until TENSORQ_HISTORY_TTL
# says otherwise, which is also the default of the kinds here when it is set. Set on the workers: they end jobs.
RETENTION: dict[Kind, tuple[str, int]] = {Kind.OP: ("TENSORQ_OP_TTL", defaults.OP_TTL_S)}


@dataclass(frozen=True)
class Settings:
    broker_url: str
    broker_source: str  # "flag", "env", "stack" or "default": said in errors so users know where it came from
    home: Path
    key_prefix: str = defaults.DEFAULT_KEY_PREFIX
    visibility_timeout_s: int = defaults.VISIBILITY_TIMEOUT_S
    history_ttl_s: int | None = None  # finished jobs expire after this long; None keeps them forever
    # seconds a finished job of each kind is kept (None: forever), from `retention()`
    retention: Mapping[str, int | None] = field(
        default_factory=lambda: {k.value: RETENTION[k][1] if k in RETENTION else None for k in Kind})
    # TENSORQ_ARTIFACTS: the object store (or shared path) blobs of artifacts_min_bytes or more go to; None: Redis
    artifacts_url: str | None = None
    artifacts_min_bytes: int = defaults.ARTIFACTS_MIN_BYTES

    @property
    def stack_record(self) -> Path:
        return self.home / STACK_RECORD_NAME

    @property
    def artifact_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def masked_broker_url(self) -> str:
        return mask_url(self.broker_url)


def home_dir() -> Path:
    return Path(os.environ.get("TENSORQ_HOME") or defaults.DEFAULT_HOME).expanduser()


def read_stack_record(home: Path) -> dict[str, Any] | None:
    """The record `tensorq up` leaves behind, or None when there is none (or it is unreadable)."""
    return _read_record(home / STACK_RECORD_NAME)


def read_down_record(home: Path) -> dict[str, Any] | None:
    """What `tensorq down` left: the broker it stopped and when; None when tensorq was not stopped here."""
    return _read_record(home / DOWN_RECORD_NAME)


def _read_record(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when it is missing, unreadable or not an object."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def resolve(broker: str | None = None) -> Settings:
    if defaults.BAD_ENV:  # the limits are read at import; a bad value is refused here, where errors are reported
        name, (raw, least) = next(iter(defaults.BAD_ENV.items()))
        bound = "above 0" if least == 1 else f"of at least {least}"
        raise BadInput(f"{name} must be a whole number {bound} (got {raw!r})")
    home = home_dir()
    prefix = os.environ.get("TENSORQ_KEY_PREFIX") or defaults.DEFAULT_KEY_PREFIX
    visibility = _positive_int("TENSORQ_VISIBILITY_TIMEOUT_S") or defaults.VISIBILITY_TIMEOUT_S
    history_ttl = _positive_int("TENSORQ_HISTORY_TTL")
    kept = retention(history_ttl)
    artifacts = os.environ.get("TENSORQ_ARTIFACTS", "").strip() or None
    if artifacts is not None:
        from shared.objects import check_url

        artifacts = check_url(artifacts)
    min_bytes = _positive_int("TENSORQ_ARTIFACTS_MIN_BYTES", "bytes") or defaults.ARTIFACTS_MIN_BYTES
    if broker:
        url, source = broker, "flag"
    elif os.environ.get("TENSORQ_BROKER_URL"):
        url, source = os.environ["TENSORQ_BROKER_URL"], "env"
    elif (record := read_stack_record(home)) and record.get("broker_url"):
        url, source = record["broker_url"], "stack"
    elif (down := read_down_record(home)) is not None:
        url, source = str(down.get("broker_url") or defaults.DEFAULT_BROKER_URL), "down"
    else:
        url, source = defaults.DEFAULT_BROKER_URL, "default"
    _SECRETS.update(secrets_of(url))
    if sentinel.is_sentinel(url):  # read whole now: a malformed one is a usage error (exit 2), said once, here
        check_sentinel_url(url)
    return Settings(url, source, home, prefix, visibility, history_ttl, kept, artifacts, min_bytes)


def check_sentinel_url(url: str) -> None:
    """BadInput, naming the masked URL and what is wrong with it, for a sentinel:// URL that cannot be read."""
    problem = password_problem(url)
    if problem is None:
        try:
            sentinel.parse(url)
        except BadInput as e:
            problem = str(e)
    if problem:
        raise BadInput(f"bad broker URL {mask_url(url)}: {problem}")


def retention(history_ttl_s: int | None) -> dict[str, int | None]:
    """Seconds a finished job of each kind is kept (None: forever): the kind's own setting (RETENTION) when given,
    else TENSORQ_HISTORY_TTL (`history_ttl_s`) when set, else the kind's default; BadInput for a bad value."""
    table: dict[str, int | None] = {}
    for kind in Kind:
        name, default = RETENTION.get(kind, ("", None))
        own = _ttl_or_forever(name) if name else None
        table[kind.value] = own[0] if own is not None else history_ttl_s if history_ttl_s is not None else default
    return table


def _ttl_or_forever(name: str) -> tuple[int | None] | None:
    """The variable's seconds, as a 1-tuple (`(None,)`: `0` or `none`, forever); None when it is not set."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if raw.lower() == "none" or raw == "0":
        return (None,)
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise BadInput(f"{name} must be a whole number of seconds, or 0 or none to keep those jobs forever "
                       f"(got {raw!r})")
    return (value,)


def _positive_int(name: str, unit: str = "seconds") -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise BadInput(f"{name} must be a whole number of {unit} above 0 (got {raw!r})")
    return value


def _userinfo_end(url: str) -> tuple[int, int]:
    """(start, end) of the URL's user:password part, read from the raw text, never parsed: a password with an
    unencoded `/`, `#`, `?` or `@` is still all of it. The part runs from after `scheme://` to the last `@`
    before the query (or the last `@` at all when the part holds a `?`); (0, 0) when there is none. In one
    Sentinel of a sentinel:// URL, the query is known by its first parameter, so an `@` in a value is not taken."""
    start = url.find("://") + 3 if "://" in url else 0
    query = _SENTINEL_QUERY.search(url) if sentinel.is_sentinel(url) else None
    end = url.rfind("@", 0, query.start() if query else len(url))
    if end < start:
        return 0, 0
    return start, end


# Where a Sentinel's query starts: `?` and a parameter it may carry.
_SENTINEL_QUERY = re.compile(rf"\?(?:{'|'.join(sentinel.PARAMS)}|ssl_\w+)=")


def _parts(url: str) -> list[str]:
    """The pieces of a URL that each have their own userinfo: a sentinel:// URL's Sentinels, else the URL."""
    return sentinel.elements(url) if sentinel.is_sentinel(url) else [url]


def secrets_of(url: str) -> list[str]:
    """The secrets a broker URL holds, as written and %-decoded: its password and secret query values."""
    found = []
    for part in _parts(url):
        start, end = _userinfo_end(part)
        if end > start and ":" in part[start:end]:
            found.append(part[start:end].split(":", 1)[1])
    found += [m.group(0)[len(m.group(1)):] for m in _SECRET_QUERY.finditer(url)]
    return sorted({form for secret in found if secret for form in (secret, unquote(secret))}, key=len, reverse=True)


def password_problem(url: str) -> str | None:
    """Why the URL's password cannot be read as written (a character a URL gives another meaning), or None."""
    passwords = ""
    for part in _parts(url):
        start, end = _userinfo_end(part)
        passwords += part[start:end].split(":", 1)[1] if end > start and ":" in part[start:end] else ""
    bad = sorted({c for c in passwords if c in "/#?@[]"})
    if bad:
        codes = ", ".join(f"{c} as %{ord(c):02X}" for c in bad)
        return f"the password holds {' '.join(bad)}, which must be %-encoded in a URL ({codes})"
    return None


def mask_url(url: str) -> str:
    """The URL with its password, and query parameters that carry secrets, replaced by `***`: safe for logs
    and messages. Masked as text, before any parsing, so a malformed URL is masked too."""
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}***", ";".join(_masked_userinfo(p) for p in _parts(url)))


def _masked_userinfo(url: str) -> str:
    start, end = _userinfo_end(url)
    if end > start and ":" in url[start:end]:
        user = url[start:end].split(":", 1)[0]
        return f"{url[:start]}{user}:***{url[end:]}"
    return url


def scrub(text: str, url: str | None = None) -> str:
    """`text` with every secret of `url` (and of every broker URL resolved in this process) masked: for
    messages that quote a library's error, which may repeat what it failed to parse."""
    secrets = {*_SECRETS, *(secrets_of(url) if url else [])}
    # a library that fails to parse a URL quotes pieces of it ("... as 's3cr3t'"): mask the pieces too
    pieces = {p for s in secrets for p in re.split(r"[/#?@:&;=%]", s)}
    for secret in sorted({x for x in secrets | pieces if len(x) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
