"""How a job record's values sit in its Redis hash: an op's small result inline (`compact_result`, `expand_result`),
and values up to a few hundred bytes split into pieces Redis keeps in its compact listpack encoding (`pieces`,
`joined`). Pure functions of bytes: shared/store.py writes records with them, shared/blobs.py reads an inline
result."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from shared import defaults

INLINE = b"="  # an artifact field holding the result itself: `=<dtype> <shape> <data>` (compact_result)
PIECE = "#"  # a value's continuation pieces in a record: `spec`, `spec#1`, `spec#2`, ...


# --- an op result inline -------------------------------------------------------------------------------------

def compact_result(safetensors: bytes) -> bytes | None:
    """An op result's safetensors bytes as its record holds them, `=<dtype> <shape> <data>` (the 64 bytes of
    header of a 2x2 float32 result become 9); None when it is not one plain tensor named `result` or would be
    larger than RESULT_INLINE_MAX_BYTES (then it has a key of its own)."""
    try:
        size = int.from_bytes(safetensors[:8], "little")
        header = json.loads(safetensors[8:8 + size])
        tensor = header["result"]
        data = safetensors[8 + size:]
        dtype, shape = str(tensor["dtype"]), [int(n) for n in tensor["shape"]]
        plain = set(header) == {"result"} and list(tensor["data_offsets"]) == [0, len(data)]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    value = INLINE + f"{dtype} {','.join(map(str, shape))} ".encode() + data
    if not plain or " " in dtype or len(value) > defaults.RESULT_INLINE_MAX_BYTES:
        return None
    return value


def expand_result(value: bytes) -> bytes:
    """The safetensors bytes a record's inline result stands for: the same bytes the worker made (the header as
    the safetensors library writes it, padded with spaces to 8 bytes)."""
    dtype, shape, data = value[len(INLINE):].split(b" ", 2)
    tensor = {"dtype": dtype.decode(), "shape": [int(n) for n in shape.split(b",") if n],
              "data_offsets": [0, len(data)]}
    header = json.dumps({"result": tensor}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


# --- a record's values in pieces ------------------------------------------------------------------------------

def pieces(name: str, value: bytes | str) -> dict[str, bytes]:
    """A record's value as hash fields: itself, or (when it is longer than a piece but at most RECORD_PIECES_MAX
    pieces) `name`, `name#1`, ... of RECORD_PIECE_BYTES each, so the record stays a listpack."""
    raw = value.encode() if isinstance(value, str) else value
    n = defaults.RECORD_PIECE_BYTES
    if len(raw) <= n or len(raw) > n * defaults.RECORD_PIECES_MAX:
        return {name: raw}
    names = piece_names(name)
    return {names[i]: raw[i * n:(i + 1) * n] for i in range(-(-len(raw) // n))}


@functools.cache  # a handful of names, asked for every op job
def piece_names(name: str) -> tuple[str, ...]:
    """Every field a value named `name` may take, in order (`pieces` uses the first ones)."""
    return (name, *(f"{name}{PIECE}{i}" for i in range(1, defaults.RECORD_PIECES_MAX)))


def unpieced(held: list[Any]) -> bytes | None:
    """A value back from HMGET of its `piece_names`: the pieces up to the first absent one; None when absent."""
    if not held or held[0] is None:
        return None
    out = []
    for piece in held:
        if piece is None:
            break
        out.append(piece.encode() if isinstance(piece, str) else piece)
    return b"".join(out)


def joined(raw: Mapping[bytes | str, bytes | str]) -> dict[str, bytes]:
    """A record's hash with every pieced value put back together (field names as text). A record written before
    values were pieced has none: it reads as it is."""
    whole: dict[str, bytes] = {}
    extra: dict[str, dict[int, bytes]] = {}
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else k
        value = v.encode() if isinstance(v, str) else v
        base, sep, index = name.rpartition(PIECE)
        if sep and index.isdigit():
            extra.setdefault(base, {})[int(index)] = value
        else:
            whole[name] = value
    for base, more in extra.items():
        i = 1
        while base in whole and i in more:  # up to the first absent piece, as `unpieced` reads them
            whole[base] += more[i]
            i += 1
    return whole
