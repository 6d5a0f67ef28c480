"""Blobs: a job's artifacts (`result`, `weights`) and its checkpoint, safetensors bytes kept in Redis up to
the inline limit; a larger one goes to a file under TENSORQ_HOME/artifacts and Redis holds its path. A small op
result lives in its job's record itself (`compact_result`). And the datasets jobs train on, by hash (always in
Redis: a dataset's limits keep it under the inline limit).

Also how a record's values are laid out in its hash (`pieces`, `joined`): values up to a few hundred bytes are
split into pieces Redis keeps in its compact listpack encoding."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
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
ARTIFACT_FIELD = "artifact:"  # a record's field per artifact: `redis` (in its key), `file:<path>`, or inline bytes
INLINE = b"="  # an artifact field holding the result itself: `=<dtype> <shape> <data>` (compact_result)
PIECE = "#"  # a value's continuation pieces in a record: `spec`, `spec#1`, `spec#2`, ...
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
        return self.get_artifacts([job_id], name)[0]

    def get_artifacts(self, job_ids: list[str], name: str) -> list[bytes | None]:
        """One artifact of many jobs (safetensors bytes), in one round trip (plus a file read for any stored as a
        file). The one place that knows where an artifact lives: inline in the record (a small op result), in
        its own key, or in a file that key names."""
        if not job_ids:
            return []
        fields = piece_names(ARTIFACT_FIELD + name)
        with self.redis.pipeline(transaction=False) as p:
            for job_id in job_ids:
                p.hmget(self.keys.job(job_id), fields)
                p.get(self.keys.artifact(job_id, name))
            replies = p.execute()
        out: list[bytes | None] = []
        for held, stored in zip(replies[::2], replies[1::2], strict=True):
            inline = unpieced(held)
            out.append(expand_result(inline) if inline is not None and inline.startswith(INLINE)
                       else self.resolve(blob(stored)))
        return out

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
