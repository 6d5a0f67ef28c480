"""Redis replies as tensorq's clients get them. No client sets `decode_responses`, so every reply is bytes;
redis-py's types say `bytes | str` (either setting) and a stream's entries may be None (a deleted entry in a
consumer group's pending list, which tensorq never reads). These narrow them, in one place."""

from __future__ import annotations

from typing import Any

Entry = tuple[str, dict[bytes, bytes]]  # a stream entry: (its id, its fields)


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def blob(raw: bytes | str | None) -> bytes | None:
    return raw.encode() if isinstance(raw, str) else raw


def texts(reply: Any) -> list[str]:
    """A reply that is a list of members or keys (SMEMBERS, ZRANGE without scores, HKEYS, ...)."""
    return [text(m) for m in reply or []]


def entries(reply: Any) -> list[Entry]:
    """An XRANGE or XREVRANGE reply (or one stream's part of an XREAD reply)."""
    return [(text(entry_id), fields) for entry_id, fields in reply or []]


def streams(reply: Any) -> list[tuple[str, list[Entry]]]:
    """An XREAD reply: (stream key, its entries) per stream that had any."""
    return [(text(key), entries(found)) for key, found in reply or []]
