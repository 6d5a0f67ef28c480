"""Blobs: a job's artifacts (`result`, `weights`) and its checkpoint, safetensors bytes kept in Redis up to
the inline limit; a larger one goes to a file under TENSORQ_HOME/artifacts and Redis holds its path. And the
datasets jobs train on, by hash (always in Redis: a dataset's limits keep it under the inline limit)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import defaults, leases
from shared.errors import TensorqError
from shared.keys import Keys
from shared.replies import blob

if TYPE_CHECKING:
    import redis

FILE = "file:"  # a stored blob with this prefix names a file instead of holding bytes
ARTIFACT_NAMES = ("result", "weights")
# KEYS: lease, checkpoint; ARGV: holder, value.
_SET_IF_HOLDER = leases.fenced("""
redis.call('SET', KEYS[2], ARGV[2])
return 1
""")


class Blobs:
    def __init__(self, client: redis.Redis, keys: Keys, artifact_dir: Path) -> None:
        self.redis = client
        self.keys = keys
        self.artifact_dir = artifact_dir
        self._set_if_holder = client.register_script(_SET_IF_HOLDER)

    # --- artifacts -----------------------------------------------------------------------------------

    def get_artifact(self, job_id: str, name: str) -> bytes | None:
        return self.get(self.keys.artifact(job_id, name))

    def get_artifacts(self, job_ids: list[str], name: str) -> list[bytes | None]:
        """One artifact of many jobs, in one round trip (plus a file read for any stored as a file)."""
        blobs = self.redis.mget([self.keys.artifact(j, name) for j in job_ids]) if job_ids else []
        return [self.resolve(blob(b)) for b in blobs]

    # --- checkpoints ---------------------------------------------------------------------------------

    def put_checkpoint(self, job_id: str, blob: bytes, lease_holder: str) -> bool:
        """The job's latest checkpoint, written only while `lease_holder` holds its lease."""
        value, _ = self.spill(job_id, "checkpoint", blob)
        keys = [self.keys.lease(job_id), self.keys.checkpoint(job_id)]
        return bool(self._set_if_holder(keys=keys, args=[lease_holder, value]))

    def get_checkpoint(self, job_id: str) -> bytes | None:
        return self.get(self.keys.checkpoint(job_id))

    # --- datasets -------------------------------------------------------------------------------------

    def put_dataset(self, sha256: str, blob: bytes) -> bool:
        """Store a dataset under its hash unless it is there already (its bytes are sent only then). True when
        this call stored it."""
        key = self.keys.dataset(sha256)
        if self.redis.exists(key):
            return False
        return bool(self.redis.set(key, blob, nx=True))

    def has_dataset(self, sha256: str) -> bool:
        return bool(self.redis.exists(self.keys.dataset(sha256)))

    def get_dataset(self, sha256: str) -> bytes | None:
        return blob(self.redis.get(self.keys.dataset(sha256)))

    # --- any blob ------------------------------------------------------------------------------------

    def put(self, key: str, job_id: str, name: str, blob: bytes, pipe: Any = None) -> str:
        """Write a blob (on `pipe` when given). Returns where it went: `redis` or `file:<path>`."""
        value, where = self.spill(job_id, name, blob)
        (pipe or self.redis).set(key, value)
        return where

    def spill(self, job_id: str, name: str, blob: bytes) -> tuple[bytes, str]:
        """(what Redis holds, where the bytes are): the bytes themselves, or a file's path when too large."""
        if len(blob) <= defaults.ARTIFACT_INLINE_MAX_BYTES:
            return blob, "redis"
        path = self.artifact_dir / job_id / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        where = FILE + str(path)
        return where.encode(), where

    def get(self, key: str) -> bytes | None:
        return self.resolve(blob(self.redis.get(key)))

    def resolve(self, stored: bytes | None) -> bytes | None:
        """The bytes a stored value stands for: itself, or the file it names."""
        if stored is not None and stored.startswith(FILE.encode()):
            path = Path(stored[len(FILE):].decode())
            try:
                return path.read_bytes()
            except OSError as e:
                raise TensorqError(f"cannot read {path} ({e.strerror}): blobs over "
                                   f"{defaults.ARTIFACT_INLINE_MAX_BYTES // 2**20} MiB live in files; put "
                                   "TENSORQ_HOME/artifacts on storage every host shares") from None
        return stored

    def file_of(self, key: str) -> Path | None:
        """The file a blob spilled to, if it did."""
        stored = blob(self.redis.get(key))
        if stored is not None and stored.startswith(FILE.encode()):
            return Path(stored[len(FILE):].decode())
        return None

    def drop(self, key: str) -> None:
        """Delete a blob, and its file when it spilled to one."""
        path = self.file_of(key)
        self.redis.delete(key)
        if path is not None:
            path.unlink(missing_ok=True)
