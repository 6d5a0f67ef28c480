"""Blobs: a job's artifacts (`result`, `weights`), its checkpoint and the datasets jobs train on (by hash), as
safetensors bytes in Redis, whatever their size, so every host that reaches Redis reaches every blob. A blob's key
holds, by what its value starts with:

- the bytes themselves, up to ARTIFACT_INLINE_MAX_BYTES;
- `chunks:<generation> <size> <chunk bytes>`: a manifest, the bytes in chunk keys (shared/chunked.py);
- `url:<url>`: an object in the store TENSORQ_ARTIFACTS names, for blobs of TENSORQ_ARTIFACTS_MIN_BYTES or more
  (shared/objects.py);
- `file:<path>`: a file under a worker's TENSORQ_HOME/artifacts, as tensorq wrote large blobs before; still read.

A blob is written in two steps: `stage` sends its bytes where they will live (chunks with a provisional TTL, or a
new object), then one script or transaction makes its key name them (`keep_into`, and the scripts here); a write
that fails between the two is `abandon`ed. A small op result lives in its job's record itself
(shared/record_values.py `compact_result`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import chunked, defaults, leases, objects
from shared.errors import TensorqError
from shared.keys import Keys
from shared.record_values import INLINE, expand_result, piece_names, unpieced
from shared.replies import blob
from shared.streamed import Blob, Streamed, of_bytes, size_of, whole

if TYPE_CHECKING:
    import redis

FILE = "file:"  # a stored blob with this prefix names a file (written by an older tensorq) instead of holding bytes
URL = objects.PREFIX.decode()
ARTIFACT_NAMES = ("result", "weights")
ARTIFACT_FIELD = "artifact:"  # a record's field per artifact: `redis` (in its key), `url:<url>`, or inline bytes
READ_ATTEMPTS = 5  # a blob replaced this many times while it is read is given up on (a checkpoint every second)
# Swap a job's checkpoint, only while the lease is ours: the new value in, its chunks made permanent (-1 when one
# has expired: the write took longer than BLOB_PENDING_TTL_S), the previous generation's chunks dropped. Returns
# {1, the previous value when it named an object or a file (its writer deletes it), else ''}.
# KEYS: lease, checkpoint; ARGV: holder, value.
_SWAP = leases.fenced(chunked.LUA + """
local new = tq_chunk_keys(KEYS[2], ARGV[2])
if not tq_chunks_there(new) then return -1 end
tq_chunks_keep(new, 0)
local old = tq_blob_unlink(KEYS[2])
redis.call('SET', KEYS[2], ARGV[2])
return {1, old}
""")
# Store a blob under a key unless the key exists (a dataset: the first to finish sending it wins): 1 stored, 0 there
# already, -1 a chunk expired. KEYS: the key; ARGV: value.
_PUT_NEW = chunked.LUA + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local new = tq_chunk_keys(KEYS[1], ARGV[1])
if not tq_chunks_there(new) then return -1 end
tq_chunks_keep(new, 0)
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
# Delete blobs with their chunks; returns, per key, what an object or file it named (for the caller to delete).
_DROP = chunked.LUA + """
local out = {}
for i, key in ipairs(KEYS) do out[i] = tq_blob_unlink(key) end
return out
"""


@dataclass(frozen=True)
class Staged:
    """A blob whose bytes are where they will live, not yet named by its key: `value` is what the key is to hold (the
    bytes, a manifest, `url:<url>`), `chunks` the chunk keys to keep, `url` the object to delete if abandoned."""

    value: bytes
    chunks: tuple[str, ...] = ()
    url: str | None = None

    @property
    def where(self) -> str:
        """What a record's artifact field says: `redis`, or `url:<url>`."""
        return URL + self.url if self.url else "redis"


class Blobs:
    def __init__(self, client: redis.Redis, keys: Keys, store_url: str | None = None,
                 store_min_bytes: int = defaults.ARTIFACTS_MIN_BYTES) -> None:
        self.redis = client
        self.keys = keys
        self.store_url = store_url  # TENSORQ_ARTIFACTS; None: every blob in Redis
        self.store_min_bytes = store_min_bytes
        self._swap = client.register_script(_SWAP)
        self._put_new = client.register_script(_PUT_NEW)
        self._drop = client.register_script(_DROP)

    # --- artifacts -----------------------------------------------------------------------------------

    def get_artifact(self, job_id: str, name: str) -> bytes | bytearray | None:
        return self.get_artifacts([job_id], name)[0]

    def get_artifacts(self, job_ids: list[str], name: str) -> list[bytes | bytearray | None]:
        """One artifact of many jobs (safetensors bytes), in one round trip (plus the chunks, or an object, of any
        too large for one value). The one place that knows where an artifact lives: inline in the record (a small op
        result), in its own key, in chunks or an object that key names."""
        if not job_ids:
            return []
        fields = piece_names(ARTIFACT_FIELD + name)
        with self.redis.pipeline(transaction=False) as p:
            for job_id in job_ids:
                p.hmget(self.keys.job(job_id), fields)
                p.get(self.keys.artifact(job_id, name))
            replies = p.execute()
        out: list[bytes | bytearray | None] = []
        for job_id, held, stored in zip(job_ids, replies[::2], replies[1::2], strict=True):
            inline = unpieced(held)
            out.append(expand_result(inline) if inline is not None and inline.startswith(INLINE)
                       else self._resolved(self.keys.artifact(job_id, name), blob(stored)))
        return out

    def copy_artifact(self, job_id: str, name: str, write: Callable[[bytes | bytearray], object]) -> bool:
        """Hand an artifact to `write` (a file's) a chunk at a time, never whole in memory; False when it has none."""
        key = self.keys.artifact(job_id, name)
        for _ in range(READ_ATTEMPTS):
            stored = blob(self.redis.get(key))
            manifest = chunked.Manifest.decode(stored)
            if stored is None:
                found = self.get_artifact(job_id, name)  # an inline op result, or nothing
                if found is not None:
                    write(found)
                return found is not None
            try:
                if manifest is not None:
                    chunked.copy(self.redis, self.keys, key, manifest, write)
                elif stored.startswith(objects.PREFIX):
                    objects.copy(stored[len(objects.PREFIX):].decode(), write)
                else:
                    write(self.resolve(stored) or b"")
                return True
            except chunked.Changed:
                self._check_changed(key, stored)  # an artifact is written once: only a lost chunk gets here
        raise TensorqError(f"{key} changed {READ_ATTEMPTS} times while it was read")

    # --- checkpoints ---------------------------------------------------------------------------------

    def put_checkpoint(self, job_id: str, data: Blob, lease_holder: str) -> bool:
        """The job's latest checkpoint, written only while `lease_holder` holds its lease: its bytes first (chunks, or
        an object, when large), then one script swaps it in. False (and nothing of it kept) when the lease is gone."""
        key = self.keys.checkpoint(job_id)
        staged = self.stage(key, data)
        try:
            reply = self._swap(keys=[self.keys.lease(job_id), key], args=[lease_holder, staged.value])
        except BaseException:
            self.abandon(staged)
            raise
        if not isinstance(reply, list):
            self.abandon(staged)
            if reply == -1:
                raise TensorqError(f"job {job_id}: a chunk of its checkpoint expired before the rest was written "
                                   f"(more than {defaults.BLOB_PENDING_TTL_S} s)")
            return False
        self.remove_external(blob(reply[1]))
        return True

    def get_checkpoint(self, job_id: str) -> bytes | bytearray | None:
        return self.get(self.keys.checkpoint(job_id))

    # --- datasets -------------------------------------------------------------------------------------

    def put_dataset(self, sha256: str, data: Blob) -> bool:
        """Store a dataset under its hash unless it is there already (its bytes are sent only then). True when
        this call stored it."""
        key = self.keys.dataset(sha256)
        if self.redis.exists(key):
            return False
        staged = self.stage(key, data)
        if not staged.chunks and staged.url is None:
            return bool(self.redis.set(key, staged.value, nx=True))
        try:
            stored = int(self._put_new(keys=[key], args=[staged.value]))
        except BaseException:
            self.abandon(staged)
            raise
        if stored != 1:
            self.abandon(staged)  # another client stored it first (or a chunk expired: said below)
        if stored == -1:
            raise TensorqError(f"dataset {sha256[:12]}: a chunk expired before the rest was sent "
                               f"(more than {defaults.BLOB_PENDING_TTL_S} s)")
        return stored == 1

    def has_dataset(self, sha256: str) -> bool:
        return bool(self.redis.exists(self.keys.dataset(sha256)))

    def get_dataset(self, sha256: str) -> bytes | bytearray | None:
        return self.get(self.keys.dataset(sha256))

    # --- any blob ------------------------------------------------------------------------------------

    def stage(self, key: str, data: Blob) -> Staged:
        """Send a blob's bytes where they will live, for `key` to name them next: an object (TENSORQ_ARTIFACTS, from
        its size), chunks with a provisional TTL (beyond one value), or nowhere yet (the value is the bytes)."""
        size = size_of(data)
        streamed = data if isinstance(data, Streamed) else of_bytes(data)
        if self.store_url is not None and size >= self.store_min_bytes:
            url = objects.location(self.store_url, key, chunked.new_generation())
            objects.write(url, streamed)
            return Staged(objects.PREFIX + url.encode(), url=url)
        if size <= defaults.ARTIFACT_INLINE_MAX_BYTES:
            return Staged(whole(data))
        manifest, names = chunked.write(self.redis, self.keys, key, streamed)
        return Staged(manifest.encode(), tuple(names))

    def keep_into(self, p: Any, staged: Staged, ttl: int | None) -> None:
        """Queue on `p` (the transaction that sets the key) what makes a staged blob's chunks last as its key does:
        the job's TTL, or forever."""
        for name in staged.chunks:
            if ttl:
                p.expire(name, ttl)
            else:
                p.persist(name)

    def abandon(self, staged: Staged) -> None:
        """Undo a stage whose key was never set: its chunks go now (they would expire anyway), its object too."""
        if staged.chunks:
            self.redis.unlink(*staged.chunks)
        if staged.url is not None:
            objects.remove(staged.url)

    def get(self, key: str) -> bytes | bytearray | None:
        return self._resolved(key, blob(self.redis.get(key)))

    def _resolved(self, key: str, stored: bytes | None) -> bytes | bytearray | None:
        """The bytes a key's value (just read) stands for; read again from the key when a new generation replaced
        the one it named while it was being read."""
        for _ in range(READ_ATTEMPTS):
            manifest = chunked.Manifest.decode(stored)
            if manifest is None:
                return self.resolve(stored)
            try:
                return chunked.read(self.redis, self.keys, key, manifest)
            except chunked.Changed:
                stored = self._check_changed(key, stored)
        raise TensorqError(f"{key} changed {READ_ATTEMPTS} times while it was read")

    def _check_changed(self, key: str, stored: bytes | None) -> bytes | None:
        """The key's value now, after a chunk of `stored`'s generation went missing; TensorqError when the key still
        names that generation (a chunk lost: evicted, or deleted by hand)."""
        now = blob(self.redis.get(key))
        if now is not None and now == stored:
            raise TensorqError(f"{key}: a chunk of it is missing (was it evicted? Redis must keep keys: "
                               "maxmemory-policy noeviction)")
        return now

    def resolve(self, stored: bytes | None) -> bytes | bytearray | None:
        """The bytes a stored value that is not a manifest stands for: itself, the object or the file it names."""
        if stored is None:
            return None
        if stored.startswith(objects.PREFIX):
            return objects.read(stored[len(objects.PREFIX):].decode())
        if stored.startswith(FILE.encode()):
            path = Path(stored[len(FILE):].decode())
            try:
                return path.read_bytes()
            except OSError as e:
                raise TensorqError(f"cannot read {path} ({e.strerror}): an older tensorq kept this blob in a file on "
                                   "the host that wrote it") from None
        return stored

    def external(self, key: str) -> bytes | None:
        """What an object or file a blob's key names (`url:<url>`, `file:<path>`), if it names one."""
        head = blob(self.redis.getrange(key, 0, chunked.HEAD_BYTES - 1))
        return head if head and is_external(head) else None

    def remove_external(self, ref: bytes | None) -> None:
        """Delete the object or file a blob named (`url:<url>`, `file:<path>`); anything else is left alone."""
        if not ref:
            return
        if ref.startswith(objects.PREFIX):
            objects.remove(ref[len(objects.PREFIX):].decode())
        elif ref.startswith(FILE.encode()):
            path = Path(ref[len(FILE):].decode())
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # the job's artifact folder, when nothing else is in it
            except OSError:
                pass

    def drop_into(self, p: Any, *blob_keys: str) -> None:
        """Queue on `p` the deletion of blobs with their chunks (the caller deletes what `external` said they name)."""
        if blob_keys:
            self._drop(keys=list(blob_keys), client=p)

    def drop(self, *blob_keys: str) -> None:
        """Delete blobs: their keys, their chunks, and the objects or files they name."""
        if not blob_keys:
            return
        for ref in self._drop(keys=list(blob_keys)):
            self.remove_external(blob(ref))


def is_external(value: bytes) -> bool:
    """Whether a blob key's value names an object or a file rather than holding (or listing) the bytes."""
    return value.startswith(objects.PREFIX) or value.startswith(FILE.encode())
