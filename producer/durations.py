"""When, as users write it: `30m`, `2h`, `1d` ago, or an ISO date/time (the CLI's `--since`, the client's
`jobs(since=...)`); and how long, as a duration alone (`prune --older-than 7d`)."""

from __future__ import annotations

import re
import time
from datetime import datetime

from shared.errors import BadInput

UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def since(value: str | float | int | datetime) -> float:
    """Epoch seconds: from a duration ago (`30m`), an ISO date (`2026-11-28`), a datetime, or epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if m := DURATION.fullmatch(text):
        return time.time() - _seconds(m)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise BadInput(f"since: expected a duration like 30m, 2h, 1d or a date like 2026-11-28 (got {text!r})") \
            from None


def duration_s(value: str, option: str) -> float:
    """Seconds of a duration as `since` reads one (`7d`, `12h`, `30m`, `90s`, `2w`); BadInput naming `option`."""
    if m := DURATION.fullmatch(value.strip()):
        return _seconds(m)
    raise BadInput(f"{option}: expected a duration like 7d, 12h or 30m (got {value!r})")


def _seconds(m: re.Match[str]) -> float:
    return float(m.group(1)) * UNITS_S[m.group(2)]
