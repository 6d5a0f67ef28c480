"""The safetensors layout, without torch: the header a writer streams before each tensor's bytes, and the table
a reader makes arrays (or tensors, worker/tensor_blobs.py) from, in place over the bytes it read.

A file is 8 bytes of header length (little-endian), the header (JSON, padded with spaces to a multiple of 8),
then the tensors' bytes back to back. Written as the safetensors library writes it (same order, same header), so
the same tensors give the same bytes: a dataset's hash does not depend on which writer made it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import DecodeError
from shared.streamed import Part, Streamed

# Every safetensors dtype tensorq writes or reads: its item size and its rank in the library's own order (its
# Dtype enum). Tensors are laid out by rank, highest first, then by name: widest items first, so every tensor starts
# at an offset its item size divides, and a reader can view it in place.
DTYPES: dict[str, tuple[int, int]] = {
    "BOOL": (1, 0), "U8": (1, 1), "I8": (1, 2), "F8_E5M2": (1, 3), "F8_E4M3": (1, 4), "I16": (2, 5), "U16": (2, 6),
    "F16": (2, 7), "BF16": (2, 8), "I32": (4, 9), "U32": (4, 10), "F32": (4, 11), "C64": (8, 12), "F64": (8, 13),
    "I64": (8, 14), "U64": (8, 15),
}
# numpy's dtype for each safetensors dtype it has (bfloat16 and the float8s it has not)
NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype("u1"), "I8": np.dtype("i1"), "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"), "F16": np.dtype("<f2"), "I32": np.dtype("<i4"), "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"), "C64": np.dtype("<c8"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
METADATA = "__metadata__"
HEADER_MAX_BYTES = 100_000_000  # the library's own bound: a longer header is not a safetensors file
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Entry:
    """One tensor in a file: its dtype, shape, and where its bytes are (offsets into the whole buffer)."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def order(dtypes: Mapping[str, str]) -> list[str]:
    """The names in the order their bytes follow the header (name -> safetensors dtype)."""
    return sorted(dtypes, key=lambda name: (-DTYPES[dtypes[name]][1], name))


def header(tensors: Mapping[str, tuple[str, tuple[int, ...]]], metadata: Mapping[str, str] | None = None
           ) -> tuple[bytes, list[str]]:
    """(the file's first bytes: its length and header; the names in the order their bytes must follow) for
    tensors given as name -> (dtype, shape)."""
    names = order({name: dtype for name, (dtype, _) in tensors.items()})
    table: dict[str, Any] = {METADATA: dict(metadata)} if metadata else {}
    at = 0
    for name in names:
        dtype, shape = tensors[name]
        size = DTYPES[dtype][0] * _numel(shape)
        table[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + size]}
        at += size
    text = _JSON.encode(table).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, names


def parse(buffer: Any) -> tuple[dict[str, Entry], dict[str, str]]:
    """(each tensor's entry, the metadata) of a safetensors file held in `buffer` (any bytes-like object); a
    malformed one raises DecodeError, as the library would refuse it."""
    view = memoryview(buffer).cast("B")
    try:
        if len(view) < 8:
            raise ValueError("shorter than its header's length")
        n = int.from_bytes(view[:8], "little")
        if n > min(HEADER_MAX_BYTES, len(view) - 8):
            raise ValueError(f"a header of {n:,} bytes in {len(view):,}")
        table = json.loads(bytes(view[8:8 + n]))
        if not isinstance(table, dict):
            raise ValueError("its header is not a JSON object")
        metadata = table.pop(METADATA, None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("its metadata is not a map of strings")
        start, entries = 8 + n, {}
        for name, t in table.items():
            dtype, shape, (a, b) = t["dtype"], tuple(int(d) for d in t["shape"]), t["data_offsets"]
            if dtype not in DTYPES or any(d < 0 for d in shape) or b - a != DTYPES[dtype][0] * _numel(shape):
                raise ValueError(f"tensor {name!r} ({dtype} {list(shape)}) does not fit offsets {a}..{b}")
            entries[name] = Entry(dtype, shape, start + int(a), start + int(b))
        at = start
        for e in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
            if e.begin != at:
                raise ValueError("its tensors' bytes overlap or leave gaps")
            at = e.end
        if at != len(view):
            raise ValueError(f"its tensors end at byte {at:,} of {len(view):,}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DecodeError(f"corrupt safetensors data: {e}") from None
    return entries, metadata


def header_end(head: Any) -> int | None:
    """Where the tensors' bytes start in a file whose first bytes are `head`, once `head` holds the whole header
    (None before: more is needed)."""
    if len(head) < 8:
        return None
    end = 8 + int.from_bytes(head[:8], "little")
    return end if len(head) >= end else None


def shapes(head: Any) -> dict[str, list[int]]:
    """Each tensor's shape, from a file's first bytes (its header: `header_end` says when they suffice), without
    its tensors' bytes; DecodeError for a header that is not one."""
    end = header_end(head)
    try:
        if end is None or end - 8 > HEADER_MAX_BYTES:
            raise ValueError("no whole header")
        table = json.loads(bytes(head[8:end]))
        return {name: [int(d) for d in t["shape"]] for name, t in table.items() if name != METADATA}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DecodeError(f"corrupt safetensors data: {e}") from None


def arrays(buffer: Any) -> dict[str, np.ndarray]:
    """The file's tensors as numpy arrays over `buffer` itself (no copy: read-only over bytes, writable over a
    bytearray); DecodeError for a malformed file or a dtype numpy has not (bfloat16, float8)."""
    entries, _ = parse(buffer)
    out = {}
    for name, e in entries.items():
        if e.dtype not in NUMPY:
            raise DecodeError(f"tensor {name!r} is {e.dtype}, which numpy cannot hold (read it with torch)")
        dtype = NUMPY[e.dtype]
        out[name] = np.frombuffer(buffer, dtype, count=_numel(e.shape), offset=e.begin).reshape(e.shape)
    return out


def of_arrays(named: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> Streamed:
    """Numpy arrays as a safetensors blob, streamed: the header, then each array's own bytes (a copy only of one
    that is not C-contiguous little-endian)."""
    held = {name: _little(a) for name, a in named.items()}
    head, names = header({name: (_dtype_name(a), a.shape) for name, a in held.items()}, metadata)

    def parts() -> Iterator[Part]:
        yield head
        for name in names:
            yield held[name].reshape(-1).view(np.uint8).data  # a memoryview of the array's own bytes

    return Streamed(len(head) + sum(a.nbytes for a in held.values()), parts)


def _little(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C") if a.dtype.byteorder == ">" else \
        np.asarray(a, order="C")


def _dtype_name(a: np.ndarray) -> str:
    for name, dtype in NUMPY.items():
        if a.dtype == dtype:
            return name
    raise DecodeError(f"no safetensors dtype for numpy's {a.dtype}")


def _numel(shape: tuple[int, ...] | list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
