"""Settings, resolved once and passed down: flag > env `TENSORQ_*` > the `tensorq up` record > defaults."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared import defaults
from shared.errors import BadInput

STACK_RECORD_NAME = "stack.json"
# Query parameters whose values are secrets: masked in every message, like the URL's password.
SECRET_QUERY_KEYS = ("password", "ssl_password")


@dataclass(frozen=True)
class Settings:
    broker_url: str
    broker_source: str  # "flag", "env", "stack" or "default": said in errors so users know where it came from
    home: Path
    key_prefix: str = defaults.DEFAULT_KEY_PREFIX
    visibility_timeout_s: int = defaults.VISIBILITY_TIMEOUT_S
    history_ttl_s: int | None = None  # finished jobs expire after this long; None keeps them forever

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


def read_stack_record(home: Path) -> dict | None:
    """The record `tensorq up` leaves behind, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((home / STACK_RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def resolve(broker: str | None = None) -> Settings:
    home = home_dir()
    prefix = os.environ.get("TENSORQ_KEY_PREFIX") or defaults.DEFAULT_KEY_PREFIX
    visibility = _positive_int("TENSORQ_VISIBILITY_TIMEOUT_S") or defaults.VISIBILITY_TIMEOUT_S
    history_ttl = _positive_int("TENSORQ_HISTORY_TTL")
    if broker:
        url, source = broker, "flag"
    elif os.environ.get("TENSORQ_BROKER_URL"):
        url, source = os.environ["TENSORQ_BROKER_URL"], "env"
    elif (record := read_stack_record(home)) and record.get("broker_url"):
        url, source = record["broker_url"], "stack"
    else:
        url, source = defaults.DEFAULT_BROKER_URL, "default"
    return Settings(url, source, home, prefix, visibility, history_ttl)


def _positive_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise BadInput(f"{name} must be a whole number of seconds above 0 (got {raw!r})")
    return value


def mask_url(url: str) -> str:
    """The URL with its password, and query parameters that carry secrets, replaced by `***`: safe for logs
    and messages."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]  # as written: keeps [::1] brackets and the host's case
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if any(key in parts.query.lower() for key in SECRET_QUERY_KEYS):
        query = [(k, "***" if k.lower() in SECRET_QUERY_KEYS else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*/"))
    return urlunsplit(parts)
