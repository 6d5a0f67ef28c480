"""Metric series: a job's named scalars (`loss`, and any other the loop records), each measured at evenly
spaced iterations, one Redis stream per (job, metric).

An entry is a batch of points: `i` its first iteration, `s` the step between points (absent for 1, so the
loss histories written before there were other metrics read unchanged), `t` the dtype code, `d` the values
packed little-endian. A float32 series measured every iteration costs 4 bytes per point plus one entry per
batch. The job's record says which series it has (`series:<name>` = step, set by the first append), so
readers that read the record need neither a scan nor another round trip to know.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

from shared import defaults, kinds, leases
from shared.errors import BadInput
from shared.keys import Keys
from shared.metric_names import LOSS
from shared.replies import entries, text

if TYPE_CHECKING:
    import numpy as np
    import redis


FIELD = "series:"  # a record field per series: `series:<name>` = its step
NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Values are packed as float32 unless they are float64, so a float32 run's values are kept exactly.
DTYPES = {"f4": "<f4", "f8": "<f8"}
# KEYS: lease, stream, job record; ARGV: holder, record field, first iteration, step, dtype code, packed values.
_APPEND = leases.fenced("""
local entry = {'i', ARGV[3]}
if ARGV[4] ~= '1' then
  entry[#entry + 1] = 's'
  entry[#entry + 1] = ARGV[4]
end
entry[#entry + 1] = 't'
entry[#entry + 1] = ARGV[5]
entry[#entry + 1] = 'd'
entry[#entry + 1] = ARGV[6]
local id = redis.call('XADD', KEYS[2], '*', unpack(entry))
redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[4])
return id
""")


class Chunk(NamedTuple):
    """One stream entry: the values at iterations first, first + step, ..."""

    entry_id: str
    first: int
    step: int
    values: np.ndarray  # float64

    @property
    def iterations(self) -> np.ndarray:
        import numpy as np

        return self.first + self.step * np.arange(len(self.values), dtype=np.int64)

    @property
    def end(self) -> int:
        """Where the next entry starts: for the loss, the iterations done."""
        return self.first + self.step * len(self.values)


class HasMetrics(Protocol):
    """What `names` reads of a job record (shared/store.py's JobRecord)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def metrics(self) -> list[str]: ...


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise BadInput(f"metric name {name!r}: expected a lowercase letter, then at most 31 lowercase letters, "
                       "digits or _")
    return name


def names_in(fields: Iterable[str]) -> list[str]:
    """The series a record's fields name, sorted."""
    return sorted(f.removeprefix(FIELD) for f in fields if f.startswith(FIELD))


def names(record: HasMetrics) -> list[str]:
    """The metrics a job has, the loss first: a training job always has a loss (an empty one until its first
    flush; a history stored before the record named its series has no `series:loss` field)."""
    others = [m for m in record.metrics if m != LOSS]
    return [LOSS, *others] if kinds.has_curves(record.kind) or LOSS in record.metrics else others


def require(record: HasMetrics, name: str) -> str:
    """`name`, when the job has that metric; else BadInput naming those it has."""
    have = names(record)
    if check_name(name) not in have:
        raise BadInput(f"job {record.id} has no metric {name!r} (it has: {', '.join(have) or 'none yet'})")
    return name


Fields = dict[str | bytes, int | str | bytes]  # what XADD takes


def pack(first: int, step: int, values: np.ndarray) -> Fields:
    """A stream entry's fields for a batch of points."""
    import numpy as np

    code = "f8" if values.dtype == np.float64 else "f4"
    fields: Fields = {"i": first}
    if step != 1:
        fields["s"] = step
    fields["t"] = code
    fields["d"] = np.asarray(values, dtype=DTYPES[code], order="C").tobytes()
    return fields


def unpack(entry_id: str, fields: Mapping[bytes, bytes]) -> Chunk:
    import numpy as np  # here, not at the top: `tensorq status` and `list` never need it

    values = np.frombuffer(fields[b"d"], dtype=DTYPES[fields[b"t"].decode()]).astype(np.float64)
    return Chunk(entry_id, int(fields[b"i"]), int(fields.get(b"s", 1)), values)


class Series:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._append = client.register_script(_APPEND)

    def append(self, job_id: str, name: str, first: int, values: np.ndarray, step: int = 1,
               lease_holder: str | None = None) -> str | None:
        """One entry holding a batch of points; returns its stream id. With `lease_holder`, only while that
        lease is still held: None when the job has been taken over (nothing was written)."""
        fields = pack(first, step, values)
        key, record = self.keys.series(job_id, check_name(name)), self.keys.job(job_id)
        if lease_holder is None:
            with self.redis.pipeline(transaction=False) as p:
                p.xadd(key, fields)  # type: ignore[arg-type]  # redis-py's dict type is invariant
                p.hsetnx(record, FIELD + name, step)
                entry_id, _ = p.execute()
            return text(entry_id)
        reply = self._append(keys=[self.keys.lease(job_id), key, record],
                             args=[lease_holder, FIELD + name, first, step, fields["t"], fields["d"]])
        return text(reply) if isinstance(reply, bytes) else None  # 0: the lease is not ours

    def chunks(self, job_id: str, name: str = LOSS, after: str = "-") -> Iterator[Chunk]:
        """Every entry after stream id `after`, oldest first, read in pages."""
        key, start = self.keys.series(job_id, name), after
        while True:
            # "(" makes the range exclusive (Redis >= 6.2), so a page never repeats the last entry.
            page = entries(self.redis.xrange(key, min=start if start == "-" else f"({start}",
                                             count=defaults.HISTORY_READ_ENTRIES))
            if not page:
                return
            for entry_id, fields in page:
                yield unpack(entry_id, fields)
            start = page[-1][0]

    def last_chunks(self, job_id: str, name: str, n_values: int) -> list[Chunk]:
        """The newest entries holding at least `n_values` points, oldest first (for --tail)."""
        key, end, out, have = self.keys.series(job_id, name), "+", [], 0
        while have < n_values:
            page = entries(self.redis.xrevrange(key, max=end if end == "+" else f"({end}", count=16))
            if not page:
                break
            for end, fields in page:
                out.append(unpack(end, fields))
                have += len(out[-1].values)
                if have >= n_values:
                    break
        return out[::-1]

    def read(self, job_id: str, name: str = LOSS) -> tuple[np.ndarray, np.ndarray]:
        """The whole series: (iterations as int64, values as float64)."""
        import numpy as np

        chunks = list(self.chunks(job_id, name))
        if not chunks:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return np.concatenate([c.iterations for c in chunks]), np.concatenate([c.values for c in chunks])

    def last(self, job_id: str, name: str = LOSS) -> Chunk | None:
        """The newest entry; None before the first flush."""
        newest = self.last_chunks(job_id, name, 1)
        return newest[-1] if newest else None

    def of_job(self, job_id: str) -> list[str]:
        """The series a job has written, read from its record (one round trip), the loss among them always:
        a history stored before records named their series has no field for it."""
        return sorted({LOSS, *names_in(text(f) for f in self.redis.hkeys(self.keys.job(job_id)))})

    def trim_after(self, job_id: str, kept: Mapping[str, str]) -> None:
        """Drop what an interrupted attempt recorded after its last checkpoint, which the resumed attempt
        records again: each series' entries newer than its stream id in `kept`, and the whole of any series
        `kept` does not name (a fresh start: `kept` is empty)."""
        for name in self.of_job(job_id):
            key = self.keys.series(job_id, name)
            last = kept.get(name)
            if last is None:
                with self.redis.pipeline(transaction=False) as p:
                    p.delete(key)
                    p.hdel(self.keys.job(job_id), FIELD + name)
                    p.execute()
                continue
            newer = [eid for eid, _ in entries(self.redis.xrange(key, min=f"({last}", max="+"))]
            if newer:
                self.redis.xdel(key, *newer)

    def keys_of(self, job_id: str, fields: Iterable[bytes | str]) -> list[str]:
        """The stream keys of a job's series, from its record's field names (bytes or str): to expire or
        delete them with the record."""
        named = (text(f) for f in fields)
        return [self.keys.series(job_id, name) for name in sorted({LOSS, *names_in(named)})]
