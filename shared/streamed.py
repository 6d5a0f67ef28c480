"""A blob made of parts (a safetensors header, then each tensor's bytes), written in order and never joined whole:
what lets a 1 GiB checkpoint reach Redis, or a file, without a second copy of it in memory. A leaf module: the
writers (worker/tensor_blobs.py, shared/tensorfile.py) make one, the stores (shared/chunked.py, shared/objects.py)
take one."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# Each part is a flat run of bytes: bytes, or a memoryview cast to unsigned bytes (format "B"), whose len() is its
# size in bytes (redis-py sends len() as the value's length).
Part = bytes | memoryview


@dataclass(frozen=True)
class Streamed:
    """`size` bytes, made by `parts()` (a fresh iterator each call, so a write can be tried again: a broker outage
    retries a job's ending). A part may be made only when asked for (a GPU tensor copied to the host then), and is
    dropped once written."""

    size: int
    parts: Callable[[], Iterator[Part]]

    def joined(self) -> bytes:
        """The whole blob: for a small one only (one Redis value; a test)."""
        return b"".join(self.parts())

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for part in self.parts():
            digest.update(part)
        return digest.hexdigest()


# What a store takes: the bytes, or a streamed blob.
Blob = bytes | Streamed


def size_of(blob: Blob) -> int:
    return blob.size if isinstance(blob, Streamed) else len(blob)


def whole(blob: Blob) -> bytes:
    return blob.joined() if isinstance(blob, Streamed) else blob


def of_bytes(data: bytes) -> Streamed:
    return Streamed(len(data), lambda: iter((data,)))
