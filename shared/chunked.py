"""Blobs larger than one Redis value, kept in Redis as chunks: what makes a 1 GiB checkpoint reachable by every
host that reaches Redis, with no shared disk.

The blob's own key holds a manifest, `chunks:<generation> <size> <chunk bytes>`; the bytes are in the keys
`<blob key>:<generation>:<i>` (shared/keys.py `Keys.chunk`, and `tq_chunk_keys` below), each a slice of the blob.
A writer sends the chunks one by one (memoryview slices of the tensors themselves: nothing is joined), a few per
pipeline, each with a provisional TTL; one script then makes the key name the new generation, makes its chunks
permanent (or gives them the job's TTL) and drops the previous generation's (shared/blobs.py). So a reader sees
the old blob or the new one whole, and a writer that crashes or is fenced out midway leaves only chunks that
expire. A reader reads the manifest, then the chunks into one buffer it allocates once; a chunk gone under it
means a new generation replaced it (`Changed`): it reads the manifest again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared import defaults
from shared.keys import Keys
from shared.streamed import Part, Streamed

if TYPE_CHECKING:
    import redis

PREFIX = b"chunks:"
HEAD_BYTES = 4096  # a value's first bytes are enough to tell a manifest or a reference from a blob's own bytes
# Lua for any script that swaps, keeps or drops a blob. The chunk key template is Keys.chunk's.
LUA = """
local function tq_chunk_keys(key, value)
  local found = {}
  local gen, size, each = string.match(value or '', '^chunks:(%S+) (%d+) (%d+)$')
  if gen then
    for i = 0, math.ceil(tonumber(size) / tonumber(each)) - 1 do found[#found + 1] = key .. ':' .. gen .. ':' .. i end
  end
  return found
end
local function tq_chunks_there(names)
  for _, name in ipairs(names) do
    if redis.call('EXISTS', name) == 0 then return false end
  end
  return true
end
local function tq_chunks_keep(names, ttl)
  for _, name in ipairs(names) do
    if ttl > 0 then redis.call('EXPIRE', name, ttl) else redis.call('PERSIST', name) end
  end
end
local function tq_blob_unlink(key)
  local head = redis.call('GETRANGE', key, 0, HEAD_END)
  for _, name in ipairs(tq_chunk_keys(key, head)) do redis.call('UNLINK', name) end
  redis.call('UNLINK', key)
  if string.sub(head, 1, 4) == 'url:' or string.sub(head, 1, 5) == 'file:' then return head end
  return ''
end
""".replace("HEAD_END", str(HEAD_BYTES - 1))


class Changed(Exception):
    """Raised when a chunk of the generation being read is gone: a new blob replaced it (or it expired)."""


@dataclass(frozen=True)
class Manifest:
    generation: str
    size: int
    chunk_bytes: int

    @property
    def count(self) -> int:
        return -(-self.size // self.chunk_bytes)

    def encode(self) -> bytes:
        return PREFIX + f"{self.generation} {self.size} {self.chunk_bytes}".encode()

    @classmethod
    def decode(cls, value: bytes | None) -> Manifest | None:
        """The manifest a key's value is, or None when it is anything else (a blob's bytes, a reference)."""
        if value is None or not value.startswith(PREFIX):
            return None
        try:
            generation, size, chunk_bytes = value[len(PREFIX):].decode().split(" ")
            return cls(generation, int(size), int(chunk_bytes))
        except ValueError:
            return None

    def keys(self, keys: Keys, blob_key: str) -> list[str]:
        return [keys.chunk(blob_key, self.generation, i) for i in range(self.count)]

    def length(self, i: int) -> int:
        return min(self.chunk_bytes, self.size - i * self.chunk_bytes)


def new_generation() -> str:
    return secrets.token_hex(6)


def write(client: redis.Redis, keys: Keys, blob_key: str, blob: Streamed) -> tuple[Manifest, list[str]]:
    """Send a blob's chunks under a new generation, each SET with the provisional TTL, BLOB_WRITE_DEPTH to a
    pipeline: (its manifest, its chunk keys). Nothing names them until a script swaps the manifest in."""
    chunk_bytes, depth = defaults.BLOB_CHUNK_BYTES, defaults.BLOB_WRITE_DEPTH  # read now: a test makes them small
    manifest = Manifest(new_generation(), blob.size, chunk_bytes)
    names = manifest.keys(keys, blob_key)
    sent, pending = 0, list[tuple[str, Part]]()
    for chunk in slices(blob, chunk_bytes):
        if sent + len(pending) >= len(names):
            raise ValueError(f"the blob is longer than the {blob.size:,} bytes it said")
        pending.append((names[sent + len(pending)], chunk))
        if len(pending) == depth:
            sent += _send(client, pending)
    sent += _send(client, pending)
    if sent != len(names):
        raise ValueError(f"the blob is shorter than the {blob.size:,} bytes it said")
    return manifest, names


def _send(client: redis.Redis, pending: list[tuple[str, Part]]) -> int:
    with client.pipeline(transaction=False) as p:
        for name, chunk in pending:
            p.set(name, chunk, ex=defaults.BLOB_PENDING_TTL_S)
        p.execute()
    n = len(pending)
    pending.clear()  # the chunks' memory (a GPU tensor's host copy) may go now
    return n


def slices(blob: Streamed, n: int) -> Iterator[Part]:
    """The blob's bytes in runs of `n` (the last one shorter): a slice of one part where a run lies within one
    (nothing copied), else the few parts it spans joined (at most `n` bytes copied: where a tensor ends)."""
    held: list[memoryview] = []
    have = 0
    for part in blob.parts():
        view = memoryview(part).cast("B")
        while len(view):
            take = min(n - have, len(view))
            held.append(view[:take])
            have += take
            view = view[take:]
            if have == n:
                yield held[0] if len(held) == 1 else b"".join(held)
                held, have = [], 0
    if held:
        yield held[0] if len(held) == 1 else b"".join(held)


def each_chunk(client: redis.Redis, keys: Keys, blob_key: str, manifest: Manifest) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of each chunk in order, BLOB_READ_DEPTH to a pipeline; Changed when one is gone or not the
    length its manifest says."""
    names, depth = manifest.keys(keys, blob_key), defaults.BLOB_READ_DEPTH
    for first in range(0, len(names), depth):
        with client.pipeline(transaction=False) as p:
            for name in names[first:first + depth]:
                p.get(name)
            replies = p.execute()
        for i, chunk in enumerate(replies, start=first):
            if not isinstance(chunk, bytes) or len(chunk) != manifest.length(i):
                raise Changed(names[i])
            yield i * manifest.chunk_bytes, chunk


def read(client: redis.Redis, keys: Keys, blob_key: str, manifest: Manifest) -> bytearray:
    """The whole blob in one buffer allocated once (each chunk is copied in and dropped)."""
    buffer = bytearray(manifest.size)
    view = memoryview(buffer)
    for at, chunk in each_chunk(client, keys, blob_key, manifest):
        view[at:at + len(chunk)] = chunk
    return buffer


def copy(client: redis.Redis, keys: Keys, blob_key: str, manifest: Manifest,
         write: Callable[[bytes | bytearray], object]) -> None:
    """The blob handed to `write` a chunk at a time (a file's write): never whole in memory."""
    for _, chunk in each_chunk(client, keys, blob_key, manifest):
        write(chunk)
