"""The job store: job records, their lifecycle (queued, running, ended) and the job index, in Redis. A job's
metric series (shared/series.py), blobs (shared/blobs.py) and lease (shared/leases.py) are parts it holds
as attributes: `store.series`, `store.blobs`, `store.leases`; `store.replication` waits for replicas to hold
what must outlive a failover (shared/replication.py).

It is the one source of truth for what users see; Celery's own bookkeeping is not consulted.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import itertools
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import defaults, leases, stats
from shared.blobs import ARTIFACT_FIELD, ARTIFACT_NAMES, URL, Blobs, Staged, is_external
from shared.chunked import HEAD_BYTES
from shared.errors import BadInput, JobNotFound
from shared.keys import Keys
from shared.leases import Leases
from shared.metric_names import LOSS
from shared.record_values import compact_result, joined, piece_names, pieces, unpieced
from shared.replication import Replication
from shared.replies import entries, streams, text, texts
from shared.series import Chunk, Series, names_in, unpack
from shared.streamed import Blob
from shared.vocab import FINISHED_STATES, JobState, Kind

if TYPE_CHECKING:
    import redis

    from shared.settings import Settings

# Cancel atomically: a queued job is cancelled at once; a running one is flagged for its worker.
_CANCEL = stats.LUA + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' then
  tq_account(ARGV[4], KEYS[1], ARGV[3], 'cancelled', tonumber(ARGV[1]), nil)
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1], 'error', 'cancelled before it started')
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'id', ARGV[3], 'state', 'cancelled')
  return 'cancelled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', ARGV[1])
  return 'requested'
end
return state
"""
# Start an attempt in one round trip: refuse a finished job (redelivered message) or a leased one (running
# elsewhere); otherwise take the lease and mark the job running. Its first start observes its wait; a later
# one counts a resume. ARGV[7]: the key prefix (for the indexes and stats).
_BEGIN = stats.LUA + leases.LUA + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return state end
if not tq_lease_take(KEYS[2], ARGV[1], ARGV[2]) then return 'leased' end
tq_account(ARGV[7], KEYS[1], ARGV[6], 'running', tonumber(ARGV[5]), nil)
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[3], 'device', ARGV[4], 'started_at', ARGV[5])
local f = redis.call('HMGET', KEYS[1], 'kind', 'submitted_at')
if redis.call('HINCRBY', KEYS[1], 'attempts', 1) == 1 then
  if f[1] and f[2] then tq_observe(ARGV[7], 'wait', f[1], tonumber(ARGV[5]) - tonumber(f[2])) end
else
  redis.call('HINCRBY', ARGV[7] .. 'stats', 'resumed', 1)
end
redis.call('SADD', KEYS[3], ARGV[6])
return 'ok'
"""
# An op job ends in one round trip: ops are pure and take microseconds, so a worker runs the op first and
# then commits its result here unless the job has ended meanwhile (cancelled, or done by a redelivery). A small
# result is among the record's fields (inline); a larger one is written to its own key.
# KEYS: job, artifact, finished stream, expiring set, its bucket, then the result's chunks (a result too large for
# one value); ARGV: started, finished, result for its own key (empty: inline), ttl (0: kept), maxlen, job id, key
# prefix, bucket member, then the record's fields and values.
_FINISH_OP = stats.LUA + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return state end
tq_account(ARGV[7], KEYS[1], ARGV[6], 'succeeded', tonumber(ARGV[2]), tonumber(ARGV[1]))
local f = redis.call('HMGET', KEYS[1], 'kind', 'submitted_at', 'attempts')
if not f[3] and f[1] and f[2] then tq_observe(ARGV[7], 'wait', f[1], tonumber(ARGV[1]) - tonumber(f[2])) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local ttl = tonumber(ARGV[4])
for i = 6, #KEYS do
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
end
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  if ARGV[3] ~= '' then redis.call('EXPIRE', KEYS[2], ttl) end
  redis.call('RPUSH', KEYS[5], ARGV[6])
  redis.call('ZADD', KEYS[4], 'NX', tonumber(ARGV[2]) + ttl, ARGV[8])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[6], 'state', 'succeeded')
return 'ok'
"""
# Take expired jobs out of the indexes, atomically, at most ARGV[2] of them. The expiring set holds buckets
# (`@<n>`: the ids in the list `<expiring>:<n>`, scored by the earliest expiry pushed there) and, from stores
# written before the buckets, single ids scored by their expiry. A record still there (another host's clock, a TTL
# set again) is looked at again when its TTL says; one made persistent leaves the set.
# KEYS: the expiring set; ARGV: now, batch, the job key prefix, then every index a job may sit in.
_SWEEP = """
local now, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
local gone = {}
local function ttl_of(id)
  local ttl = redis.call('TTL', ARGV[3] .. id)
  if ttl == -2 then table.insert(gone, id) end
  return ttl
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, budget)) do
  if budget <= 0 then break end
  if string.sub(member, 1, 1) == '@' then
    local list = KEYS[1] .. ':' .. string.sub(member, 2)
    while budget > 0 do
      local id = redis.call('LPOP', list)
      if not id then redis.call('ZREM', KEYS[1], member) break end
      budget = budget - 1
      local ttl = ttl_of(id)
      if ttl >= 0 then
        redis.call('LPUSH', list, id)
        redis.call('ZADD', KEYS[1], now + math.max(ttl, 1), member)
        break
      end
    end
  else
    budget = budget - 1
    local ttl = ttl_of(member)
    if ttl >= 0 then redis.call('ZADD', KEYS[1], now + math.max(ttl, 1), member)
    else redis.call('ZREM', KEYS[1], member) end
  end
end
if #gone > 0 then
  for i = 4, #ARGV do redis.call('ZREM', ARGV[i], unpack(gone)) end
end
return #gone
"""
# Put jobs written before the (kind, state) indexes existed into them, a page at a time; atomic per page, so
# a state change either comes before (and is read here) or after (and moves the entry this wrote).
# KEYS: none (keys from the prefix, as shared/stats.py builds them); ARGV: prefix, then the ids.
_INDEX_PAGE = """
for i = 2, #ARGV do
  local f = redis.call('HMGET', ARGV[1] .. 'job:' .. ARGV[i], 'kind', 'state', 'submitted_at')
  if f[1] and f[2] then
    redis.call('ZADD', ARGV[1] .. 'jobs:' .. f[1] .. ':' .. f[2], tonumber(f[3]) or 0, ARGV[i])
  end
end
return #ARGV - 1
"""
INDEX_PAGE_IDS = 1_000
# Job ids are 16 hex digits; a unique prefix of at least 4 finds its job, as git finds a commit.
ID_LENGTH = 16
MIN_ID_PREFIX = 4
ID_CHARS = re.compile(r"[0-9a-f]+")
# Fields a kind's summary shares with its record: stored once, in the record, and put back into the summary when
# read (an op's summary names its worker; the record does already).
SUMMARY_FROM_RECORD: dict[str, tuple[str, ...]] = {Kind.OP.value: ("worker",)}
# A record's JSON values, compact: every byte counts a million times (one encoder: json.dumps with separators
# would build one per call)
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
# An op's commit runs for every tiny job: its words are looked up once (an Enum's .value costs ~0.3 us each)
_OP, _SUCCEEDED, _RESULT_FIELD = Kind.OP.value, JobState.SUCCEEDED.value, ARTIFACT_FIELD + "result"
# Kinds whose specs never name a dataset (an op's operands are in its spec): prune_datasets does not read them.
NAMES_NO_DATASET = (Kind.OP.value,)
URL_B = URL.encode()
# Remove ids from a group's list (a page of pruned jobs), and the group itself once it holds none.
# KEYS: the group's list, its record; ARGV: the ids.
_UNGROUP = """
local drop = {}
for _, id in ipairs(ARGV) do drop[id] = true end
local keep = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if not drop[id] then keep[#keep + 1] = id end
end
redis.call('DEL', KEYS[1])
if #keep == 0 then redis.call('DEL', KEYS[2]) end
for i = 1, #keep, 1000 do redis.call('RPUSH', KEYS[1], unpack(keep, i, math.min(i + 999, #keep))) end
return #keep
"""


@dataclass
class _Owned:
    """What a pruned job owns beyond its record: its series keys, its group, the objects or files its blobs name."""

    job_id: str
    series: list[str]
    group: str | None
    externals: list[bytes]


def _dataset_of(spec: bytes) -> str:
    data = json.loads(spec).get("data")
    return str(data.get("sha256")) if isinstance(data, dict) else ""


@dataclass
class JobRecord:
    id: str
    kind: str
    state: str
    queue: str
    spec: dict[str, Any]
    submitted_at: float
    worker: str | None = None
    device: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    summary: dict[str, Any] | None = None
    artifacts: list[str] = field(default_factory=list)
    attempts: int = 0  # times a worker started (or resumed) it
    recoveries: int = 0  # times it was re-enqueued after its worker died
    priority: str = "normal"
    group: str | None = None  # the sweep or job file it came from
    rerun_of: str | None = None  # the job it reruns
    metrics: list[str] = field(default_factory=list)  # the series it has recorded (shared/series.py)

    @property
    def finished(self) -> bool:
        return JobState(self.state) in FINISHED_STATES

    def to_status(self) -> dict[str, Any]:
        """The `status --json` object (a scripting contract: keys are only ever added). Shallow: every field
        is a fresh value of this record (dataclasses.asdict's deep copy was most of `--wait --json` for a
        600-op group)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[bytes | str, bytes | str]) -> JobRecord:
        whole = joined(raw)  # an artifact's field may hold the artifact's bytes: only its name is read here
        h = {k: v.decode() for k, v in whole.items() if not k.startswith(ARTIFACT_FIELD)}

        def num(name: str) -> float | None:
            return float(h[name]) if h.get(name) else None

        return cls(
            id=job_id,
            kind=h.get("kind", "?"),
            state=h.get("state", JobState.QUEUED.value),
            queue=h.get("queue", "?"),
            spec=json.loads(h.get("spec") or "{}"),
            submitted_at=num("submitted_at") or 0.0,
            worker=h.get("worker") or None,
            device=h.get("device") or None,
            started_at=num("started_at"),
            finished_at=num("finished_at"),
            error=h.get("error") or None,
            summary=_summary(h),
            artifacts=sorted(k.removeprefix(ARTIFACT_FIELD) for k in whole if k.startswith(ARTIFACT_FIELD)),
            attempts=int(h.get("attempts") or 0),
            recoveries=int(h.get("recoveries") or 0),
            priority=h.get("priority") or "normal",
            group=h.get("group") or None,
            rerun_of=h.get("rerun_of") or None,
            metrics=names_in(h),
        )


@dataclass
class Ending:
    """How one job ended, for `mark_finished_many`."""

    job_id: str
    state: JobState
    summary: dict[str, Any] | None = None
    error: str | None = None
    artifacts: Mapping[str, Blob] | None = None
    lease_holder: str | None = None


def _summary(h: Mapping[str, str]) -> dict[str, Any] | None:
    if not h.get("summary"):
        return None
    summary: dict[str, Any] = json.loads(h["summary"])
    for name in SUMMARY_FROM_RECORD.get(h.get("kind", ""), ()):
        if name not in summary:  # stored once, in the record (a record written before keeps its own)
            summary[name] = h.get(name) or None
    return summary


class JobStore:
    def __init__(self, client: redis.Redis, keys: Keys, artifact_dir: Path, history_ttl_s: int | None = None,
                 retention: Mapping[str, int | None] | None = None, store_url: str | None = None,
                 store_min_bytes: int = defaults.ARTIFACTS_MIN_BYTES) -> None:
        """`artifact_dir`: where an older tensorq kept large blobs as files (pruned with their jobs); `store_url`
        and `store_min_bytes`: the object store blobs that large go to (TENSORQ_ARTIFACTS), None: Redis."""
        from shared import settings

        self.redis = client
        self.keys = keys
        self.artifact_dir = artifact_dir
        self.history_ttl_s = history_ttl_s  # None: keep finished jobs forever (unless the kind's retention says)
        # seconds each kind's finished jobs are kept (None: forever): given, or as the environment says
        # (TENSORQ_OP_TTL, ...; shared/settings.py's RETENTION, the one table of it)
        self.retention = dict(retention) if retention is not None else settings.retention(history_ttl_s)
        self.series = Series(client, keys)
        self.blobs = Blobs(client, keys, store_url, store_min_bytes)
        self.leases = Leases(client, keys)
        self.replication = Replication(client, keys)
        self._cancel = client.register_script(_CANCEL)
        self._begin = client.register_script(_BEGIN)
        self._finish_op = client.register_script(_FINISH_OP)
        self._sweep = client.register_script(_SWEEP)
        self._ungroup = client.register_script(_UNGROUP)
        self._account = client.register_script(stats.ACCOUNT)
        self._index_page = client.register_script(_INDEX_PAGE)
        self._indexed = False  # known to hold every job in its (kind, state) index

    @classmethod
    def of(cls, client: redis.Redis, settings: Settings) -> JobStore:
        """The store as a process's settings make it (its key prefix, retention, object store)."""
        return cls(client, Keys(settings.key_prefix), settings.artifact_dir, settings.history_ttl_s,
                   settings.retention, settings.artifacts_url, settings.artifacts_min_bytes)

    # --- job records -------------------------------------------------------------------------------

    def create(self, job_id: str, kind: str, spec: dict[str, Any], queue: str, **links: str | None) -> None:
        """A `queued` job record; `links` are optional text fields: priority, group, rerun_of."""
        self.create_many([(job_id, kind, spec, queue, links)])

    def create_many(self, jobs: list[tuple[str, str, dict[str, Any], str, dict[str, str | None]]]) -> None:
        """Records for many jobs, (id, kind, spec, queue, links) each, in one round trip: all or none (a
        transaction, so a Redis that runs out of memory midway keeps none of them)."""
        now = time.time()
        with self.redis.pipeline() as p:
            for job_id, kind, spec, queue, links in jobs:
                # compact: every byte of a record counts a million times; "normal" is what a record without says
                record: dict[Any, str | bytes] = {  # Any: redis-py's mapping type is invariant in its keys
                    "kind": kind, "state": JobState.QUEUED.value, "queue": queue,
                    **pieces("spec", COMPACT_JSON.encode(spec)), "submitted_at": repr(now)}
                record.update({k: v for k, v in links.items() if v is not None and (k, v) != ("priority", "normal")})
                p.hset(self.keys.job(job_id), mapping=record)
            p.zadd(self.keys.jobs, {job_id: now for job_id, *_ in jobs})
            for kind in {kind for _, kind, *_ in jobs}:  # the queued index, in the same transaction
                p.zadd(self.keys.state_index(kind, JobState.QUEUED.value), {j: now for j, k, *_ in jobs if k == kind})
            p.execute()

    def delete(self, *job_ids: str) -> None:
        """Forget jobs that never reached a queue (their send failed). No transaction: Redis refuses every
        command of one while it is out of memory, but deletes outside one go through."""
        with self.redis.pipeline(transaction=False) as p:
            for job_id in job_ids:
                p.delete(self.keys.job(job_id), self.keys.series(job_id, LOSS))
            p.zrem(self.keys.jobs, *job_ids)
            for index in self._state_indexes():
                p.zrem(index, *job_ids)
            p.execute()

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(job_id, raw) if raw else None

    def get_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        with self.redis.pipeline(transaction=False) as p:
            for job_id in job_ids:
                p.hgetall(self.keys.job(job_id))
            raws = p.execute()
        return [JobRecord.from_hash(j, raw) if raw else None for j, raw in zip(job_ids, raws, strict=True)]

    def require(self, job_id: str) -> JobRecord:
        """The job with this id, or else the one job whose id starts with it (at least
        MIN_ID_PREFIX characters); JobNotFound for none, BadInput when several match."""
        record = self.get(job_id)
        if record is None and MIN_ID_PREFIX <= len(job_id) < ID_LENGTH and ID_CHARS.fullmatch(job_id):
            matches = [m.decode() for m, _ in itertools.islice(
                self.redis.zscan_iter(self.keys.jobs, match=f"{job_id}*", count=1000), 2)]
            if len(matches) > 1:
                raise BadInput(f"job id prefix {job_id!r} is ambiguous ({', '.join(matches)}, ...): give more of it")
            record = self.get(matches[0]) if matches else None
        if record is None:
            raise JobNotFound(f"no job {job_id!r}")
        return record

    def state(self, job_id: str) -> JobState | None:
        raw = self.redis.hget(self.keys.job(job_id), "state")
        return JobState(text(raw)) if raw else None

    def states(self, job_ids: list[str]) -> list[JobState | None]:
        with self.redis.pipeline(transaction=False) as p:
            for job_id in job_ids:
                p.hget(self.keys.job(job_id), "state")
            return [JobState(text(raw)) if raw else None for raw in p.execute()]

    def begin(self, job_id: str, lease_holder: str, worker: str, device: str) -> str:
        """`ok` (the lease is ours and the job is `running`), `leased` (running elsewhere), or the state a
        finished job is in; one round trip."""
        keys = [self.keys.job(job_id), self.keys.lease(job_id), self.keys.running]
        args: builtins.list[str | int] = [lease_holder, defaults.LEASE_TTL_S, worker, device, repr(time.time()), job_id,
                                          self.keys.prefix]
        return text(self._begin(keys=keys, args=args))

    def mark_requeued(self, job_id: str) -> None:
        """Back to `queued`: its worker stopped and handed the job back (it resumes from its checkpoint)."""
        with self.redis.pipeline() as p:
            self._account_into(p, job_id, JobState.QUEUED, time.time())
            p.hset(self.keys.job(job_id), mapping={"state": JobState.QUEUED.value, "worker": "", "device": ""})
            p.srem(self.keys.running, job_id)
            p.hincrby(self.keys.stats, stats.Counter.HANDED_BACK.value, 1)
            p.execute()

    def mark_finished(self, job_id: str, state: JobState, summary: dict[str, Any] | None = None,
                      error: str | None = None, artifacts: Mapping[str, Blob] | None = None,
                      lease_holder: str | None = None) -> bool:
        """The end of a job: its artifacts, summary or error, its state; its checkpoint goes. With
        `lease_holder`, only while that lease is held (a transaction watching it), and the lease goes too;
        False when the job was taken over meanwhile and nothing was written. Artifacts too large for one value
        are sent first (shared/blobs.py `stage`); the transaction names them."""
        ending = Ending(job_id, state, summary, error, artifacts, lease_holder)
        checkpoint_ref = self.blobs.external(self.keys.checkpoint(job_id))  # goes with the checkpoint, below
        if lease_holder is None:
            self.mark_finished_many([ending])
        else:
            import redis

            staged = self._stage(ending)
            with self.redis.pipeline(transaction=True) as p:
                try:
                    if not self.leases.watch(p, job_id, lease_holder):
                        self._abandon(staged)
                        return False
                    # only its lease holder adds a series, so the names read now are all it will have
                    owned = self._owned([job_id], p)[job_id]
                    p.multi()
                    self._end_into(p, ending, owned, staged)
                    p.delete(self.keys.lease(job_id))
                    p.execute()
                except redis.WatchError:
                    self._abandon(staged)
                    return False
                except BaseException:
                    self._abandon(staged)
                    raise
        self.blobs.remove_external(checkpoint_ref)
        return True

    def mark_finished_many(self, endings: list[Ending]) -> None:
        if not endings:
            return
        owned = self._owned([e.job_id for e in endings])
        staged = {e.job_id: self._stage(e) for e in endings}
        try:
            with self.redis.pipeline(transaction=False) as p:
                for e in endings:
                    self._end_into(p, e, owned[e.job_id], staged[e.job_id])
                p.execute()
        except BaseException:
            for s in staged.values():
                self._abandon(s)
            raise

    def _stage(self, e: Ending) -> dict[str, Staged]:
        """An ending's artifacts sent where they will live, before the transaction that names them."""
        staged: dict[str, Staged] = {}
        try:
            for name, data in (e.artifacts or {}).items():
                staged[name] = self.blobs.stage(self.keys.artifact(e.job_id, name), data)
        except BaseException:
            self._abandon(staged)
            raise
        return staged

    def _abandon(self, staged: Mapping[str, Staged]) -> None:
        for s in staged.values():
            self.blobs.abandon(s)

    def _owned(self, job_ids: Iterable[str], p: Any = None) -> dict[str, tuple[int | None, list[str]]]:
        """Each job's retention (seconds, by its kind; None: kept) and its series keys, to expire with it: read
        in one round trip (on `p`, a pipeline in immediate mode, when given), only when some kind expires."""
        job_ids = list(job_ids)
        if not any(self.retention.values()):
            return {j: (None, []) for j in job_ids}
        if p is not None:  # a watched transaction before MULTI: each command answers at once
            return {j: (self.retention.get(text(p.hget(self.keys.job(j), "kind") or b"")),
                        self.series.keys_of(j, p.hkeys(self.keys.job(j)))) for j in job_ids}
        with self.redis.pipeline(transaction=False) as q:
            for job_id in job_ids:
                q.hget(self.keys.job(job_id), "kind")
                q.hkeys(self.keys.job(job_id))
            replies = q.execute()
        return {j: (self.retention.get(text(kind or b"")), self.series.keys_of(j, fields))
                for j, kind, fields in zip(job_ids, replies[::2], replies[1::2], strict=True)}

    def _account_into(self, p: Any, job_id: str, state: JobState, now: float) -> None:
        """Queue the index move (and an ending's counts) of a state change, before the change itself."""
        self._account(keys=[self.keys.job(job_id)], args=[self.keys.prefix, job_id, state.value, repr(now)], client=p)

    def _state_indexes(self) -> list[str]:
        return [self.keys.state_index(k.value, s.value) for k in Kind for s in JobState]

    def _end_into(self, p: Any, e: Ending, owned: tuple[int | None, list[str]], staged: Mapping[str, Staged]) -> None:
        now = time.time()
        self._account_into(p, e.job_id, e.state, now)
        fields: dict[str, str | bytes] = {"state": e.state.value, "finished_at": repr(now)}
        long: dict[str, str] = {}
        if e.summary is not None:
            long["summary"] = COMPACT_JSON.encode(e.summary)
        if e.error is not None:
            long["error"] = e.error
        for name, s in staged.items():
            p.set(self.keys.artifact(e.job_id, name), s.value)
            self.blobs.keep_into(p, s, owned[0])  # its chunks last as long as the key (retention, below)
            fields[ARTIFACT_FIELD + name] = s.where
        stale = ["cancel_requested"]
        for name, value in long.items():
            parts = pieces(name, value)
            fields.update(parts)
            stale += [n for n in piece_names(name) if n not in parts]  # of a longer value written before
        p.hset(self.keys.job(e.job_id), mapping=fields)
        p.hdel(self.keys.job(e.job_id), *stale)
        p.srem(self.keys.running, e.job_id)
        self.blobs.drop_into(p, self.keys.checkpoint(e.job_id))  # with its chunks
        self._expire(p, e.job_id, *owned)
        p.xadd(self.keys.finished, {"id": e.job_id, "state": e.state.value},
               maxlen=defaults.FINISHED_STREAM_MAXLEN, approximate=True)

    def finish_op(self, job_id: str, worker: str, device: str, started_at: float, summary: dict[str, Any],
                  result: bytes) -> str:
        """Commit an op job's result and end it `succeeded`, in one round trip; or, when it had ended already
        (cancelled, or finished by another delivery), or has no record, change nothing and say so."""
        keys, args = self._finish_op_call(job_id, worker, device, started_at, summary, result)
        outcome = text(self._finish_op(keys=keys, args=args))
        if outcome != "ok":
            self._abandon_result(keys, args)
        return outcome

    def finish_ops(self, ops: list[tuple[str, str, str, float, dict[str, Any], bytes]]) -> list[str]:
        """`finish_op` for many ops in one pipeline: `ok`, `missing`, or the state each had already ended in."""
        calls = [self._finish_op_call(*op) for op in ops]
        with self.redis.pipeline(transaction=False) as p:
            for keys, args in calls:
                self._finish_op(keys=keys, args=args, client=p)
            outcomes = texts(p.execute())
        for (keys, args), outcome in zip(calls, outcomes, strict=True):
            if outcome != "ok":
                self._abandon_result(keys, args)
        return outcomes

    def _abandon_result(self, keys: list[str], args: list[Any]) -> None:
        """A refused op commit's result, when it was sent ahead of it (chunks, an object): dropped now."""
        self.blobs.abandon(Staged(args[2], tuple(keys[5:]), args[2][len(URL_B):].decode()
                                  if isinstance(args[2], bytes) and args[2].startswith(URL_B) else None))

    def _finish_op_call(self, job_id: str, worker: str, device: str, started_at: float, summary: dict[str, Any],
                        result: bytes) -> tuple[list[str], list[Any]]:
        now, ttl = time.time(), self.retention.get(_OP) or 0
        fields: dict[str, str | bytes] = {"state": _SUCCEEDED, "worker": worker, "device": device,
                                          "started_at": repr(started_at), "finished_at": repr(now)}
        # what the record says already is left out of the summary (from_hash puts it back)
        shared = SUMMARY_FROM_RECORD[_OP]
        told = {k: v for k, v in summary.items() if k not in shared or fields.get(k) != v}
        fields.update(pieces("summary", COMPACT_JSON.encode(told)))
        inline = compact_result(result)
        chunks: list[str] = []
        if inline is not None:  # in the record: one key fewer, and it expires with it
            fields.update(pieces(_RESULT_FIELD, inline))
            blob = b""
        else:  # its own key: the bytes, or (beyond one value) a manifest of chunks sent now, kept by the script
            staged = self.blobs.stage(self.keys.artifact(job_id, "result"), result)
            blob, fields[_RESULT_FIELD], chunks = staged.value, staged.where, list(staged.chunks)
        member, bucket = self._bucket(now + ttl)
        keys = [self.keys.job(job_id), self.keys.artifact(job_id, "result"), self.keys.finished, self.keys.expiring,
                bucket, *chunks]
        args = [repr(started_at), repr(now), blob, ttl, defaults.FINISHED_STREAM_MAXLEN, job_id, self.keys.prefix,
                member, *(x for pair in fields.items() for x in pair)]
        return keys, args

    def _bucket(self, expires_at: float) -> tuple[str, str]:
        """The expiring set's member for jobs expiring about then, and its list of their ids."""
        n = int(expires_at // defaults.EXPIRY_BUCKET_S)
        # a bucket's key derives from the expiring set's (shared/keys.py), as _SWEEP derives it from the member
        return f"@{n}", f"{self.keys.expiring}:{n}"

    def _expire(self, p: redis.client.Pipeline, job_id: str, ttl: int | None, series_keys: list[str]) -> None:
        if ttl:  # retention: the job and all it made expire together
            p.expire(self.keys.job(job_id), ttl)
            for key in series_keys:
                p.expire(key, ttl)
            for name in ARTIFACT_NAMES:
                p.expire(self.keys.artifact(job_id, name), ttl)
            at = time.time() + ttl
            member, bucket = self._bucket(at)
            p.rpush(bucket, job_id)  # swept from the indexes once expired
            p.zadd(self.keys.expiring, {member: at}, nx=True)

    def fail_if_waiting(self, job_id: str, error: str) -> str | None:
        """End a job `failed` for a message that cannot run, unless the message is a stray: the job has
        ended, runs elsewhere, or has no record. None when it was ended; else why not (`missing` or its state)."""
        state = self.state(job_id)
        if state is None:
            return "missing"
        if state.finished or state == JobState.RUNNING:
            return state.value
        self.mark_finished(job_id, JobState.FAILED, error=error)
        return None

    def request_cancel(self, job_id: str) -> str:
        """`cancelled` (it was queued: it will never start), `requested` (it is running: its worker stops it
        at the next iteration), or the state it had already ended in."""
        outcome = text(self._cancel(keys=[self.keys.job(job_id), self.keys.finished],
                                    args=[repr(time.time()), defaults.FINISHED_STREAM_MAXLEN, job_id,
                                          self.keys.prefix]))
        if outcome == "missing":
            raise JobNotFound(f"no job {job_id!r}")
        if outcome == JobState.CANCELLED:  # a job handed back or recovered may have left a checkpoint (and series)
            self.blobs.drop(self.keys.checkpoint(job_id))
            ttl, series = self._owned([job_id])[job_id]
            if ttl:
                with self.redis.pipeline() as p:
                    self._expire(p, job_id, ttl, series)
                    p.execute()
        return outcome

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.hexists(self.keys.job(job_id), "cancel_requested"))

    def list(self, state: str | None = None, limit: int = 50, kind: str | None = None,
             since: float | None = None, group: str | None = None) -> list[JobRecord]:
        """Newest first, optionally only one state / kind / group / submitted at or after `since` (epoch
        seconds), combined. Answered from indexes, never a scan: the (kind, state) indexes the filters name
        (or every job's), each read only `limit` deep and merged; with `group`, the group's own list."""
        self.ensure_indexed()
        self.sweep_expired()
        if group is not None:
            return self._list_group(group, state, kind, since, limit)
        if state is None and kind is None:
            indexes = [self.keys.jobs]
        else:
            kinds = [kind] if kind else [k.value for k in Kind]
            states = [state] if state else [s.value for s in JobState]
            indexes = [self.keys.state_index(k, s) for k in kinds for s in states]
        low = "-inf" if since is None else since
        for _ in range(8):  # a record gone without its index entry (evicted, expired unswept): drop it, read again
            with self.redis.pipeline(transaction=False) as p:
                for index in indexes:
                    p.zrevrangebyscore(index, "+inf", low, start=0, num=limit, withscores=True)
                found = {(score, m.decode()) for entries in p.execute() for m, score in entries}
            ids = [job_id for _, job_id in sorted(found, reverse=True)[:limit]]  # ties as one index orders them
            records = self.get_many(ids)
            missing = [j for j, r in zip(ids, records, strict=True) if r is None]
            if not missing:
                break
            with self.redis.pipeline(transaction=False) as p:
                for index in indexes:
                    p.zrem(index, *missing)
                p.zrem(self.keys.jobs, *missing)
                p.execute()
        return [r for r in records if r is not None and _matches(r, state, kind, since)]

    def _list_group(self, group: str, state: str | None, kind: str | None, since: float | None,
                    limit: int) -> builtins.list[JobRecord]:
        """A group's jobs, newest first, read in pages from its own list (O(group), never O(store))."""
        from shared.groups import GroupStore

        ids = GroupStore(self.redis, self.keys).require(group).job_ids[::-1]
        out: list[JobRecord] = []
        page = max(limit, 100)
        for start in range(0, len(ids), page):
            for record in self.get_many(ids[start:start + page]):
                if record is not None and _matches(record, state, kind, since):
                    out.append(record)
            if len(out) >= limit:
                break
        return out[:limit]

    def sweep_expired(self, batch: int = 1_000) -> int:
        """Take jobs whose record expired (their kind's retention, TENSORQ_HISTORY_TTL) out of the indexes; returns
        how many. One script: O(jobs expired since the last sweep, at most `batch`), never O(store)."""
        indexes = [self.keys.jobs, *self._state_indexes()]
        return int(self._sweep(keys=[self.keys.expiring], args=[repr(time.time()), batch, self.keys.job(""),
                                                                 *indexes]))

    # --- pruning ------------------------------------------------------------------------------------------

    def prune(self, ended_before: float, kinds: Iterable[str], states: Iterable[str], dry_run: bool = False,
              page: int = defaults.PRUNE_PAGE_JOBS) -> dict[str, int]:
        """Delete the finished jobs of these kinds and (finished) states that ended before `ended_before` (epoch
        seconds), with everything they own; how many of each kind were (with `dry_run`: would be) deleted.
        A page at a time, from the (kind, state) indexes: a job that ended before the cutoff was submitted
        before it, so only those entries are read (O(jobs pruned + those submitted before the cutoff that
        ended after it))."""
        self.ensure_indexed()
        deleted = {kind: 0 for kind in kinds}
        for kind in deleted:
            for state in states:
                if JobState(state) not in FINISHED_STATES:
                    raise BadInput(f"prune deletes finished jobs only (succeeded, failed, cancelled), not {state}")
                deleted[kind] += self._prune_index(kind, state, ended_before, dry_run, page)
        return deleted

    def _prune_index(self, kind: str, state: str, ended_before: float, dry_run: bool, page: int) -> int:
        index, skip, count = self.keys.state_index(kind, state), 0, 0
        while ids := texts(self.redis.zrangebyscore(index, "-inf", ended_before, start=skip, num=page)):
            with self.redis.pipeline(transaction=False) as p:
                for job_id in ids:
                    p.hmget(self.keys.job(job_id), ["state", "finished_at", "group"])
                    p.hkeys(self.keys.job(job_id))
                    for key in self._blob_keys(job_id):  # one that names an object or a file says so first
                        p.getrange(key, 0, HEAD_BYTES - 1)
                replies = p.execute()
            step = 2 + len(ARTIFACT_NAMES) + 1
            due: list[_Owned] = []
            gone: list[str] = []
            for i, job_id in enumerate(ids):
                (found, finished_at, group), fields, *heads = replies[i * step:(i + 1) * step]
                if found is None:  # expired, its index entry not swept yet
                    gone.append(job_id)
                elif text(found) == state and finished_at and float(finished_at) < ended_before:
                    due.append(_Owned(job_id, self.series.keys_of(job_id, fields), text(group) if group else None,
                                      [h for h in heads if h and is_external(h)]))
            count += len(due)
            if dry_run:
                skip += len(ids)
                continue
            self._delete_owned(index, due, gone)
            skip += len(ids) - len(due) - len(gone)  # what is left of this page stays at its head
        return count

    def _delete_owned(self, index: str, due: builtins.list[_Owned], gone: builtins.list[str]) -> None:
        """Delete jobs with all they own: record, series, artifacts (and their files), checkpoint, lease, index
        entries, group membership. In pipelines of one page each."""
        ids = [o.job_id for o in due] + gone
        if not ids:
            return
        with self.redis.pipeline(transaction=False) as p:
            for o in due:
                p.delete(self.keys.job(o.job_id), *o.series, self.keys.lease(o.job_id))
                self.blobs.drop_into(p, *self._blob_keys(o.job_id))  # artifacts and checkpoint, with their chunks
            for key in (index, self.keys.jobs, self.keys.expiring):  # expiring: ids of stores before its buckets
                p.zrem(key, *ids)
            p.execute()
        groups: dict[str, builtins.list[str]] = {}
        for o in due:
            if o.group is not None:
                groups.setdefault(o.group, []).append(o.job_id)
        for group, members in groups.items():
            self._ungroup(keys=[self.keys.group_jobs(group), self.keys.group(group)], args=members)
        for o in due:
            for ref in o.externals:
                self.blobs.remove_external(ref)
            with contextlib.suppress(OSError):  # its artifact folder, when nothing else is in it
                (self.artifact_dir / o.job_id).rmdir()

    def _blob_keys(self, job_id: str) -> builtins.list[str]:
        """Every blob a job may own: its artifacts, then its checkpoint."""
        return [*(self.keys.artifact(job_id, n) for n in ARTIFACT_NAMES), self.keys.checkpoint(job_id)]

    def prune_datasets(self, dry_run: bool = False, page: int = defaults.PRUNE_PAGE_JOBS) -> int:
        """Delete the datasets no job's spec names (`spec.data.sha256`); how many were (would be) deleted. Reads
        every job's spec that may name one (O(jobs)); a job submitted meanwhile that names a deleted dataset
        fails on its worker, saying so (worker/dataset.py)."""
        self.ensure_indexed()
        named: set[str] = set()
        for kind in Kind:
            if kind.value in NAMES_NO_DATASET:
                continue
            for state in JobState:
                index, start = self.keys.state_index(kind.value, state.value), 0
                while ids := texts(self.redis.zrange(index, start, start + page - 1)):
                    with self.redis.pipeline(transaction=False) as p:
                        for job_id in ids:
                            p.hmget(self.keys.job(job_id), piece_names("spec"))
                        specs = [unpieced(h) for h in p.execute()]
                    named.update(_dataset_of(spec) for spec in specs if spec is not None)
                    start += len(ids)
        prefix = self.keys.dataset("")
        unnamed = [text(key) for key in self.redis.scan_iter(match=f"{prefix}*", count=1000)
                   if ":" not in text(key)[len(prefix):]  # a chunk of a large one goes with it
                   and text(key)[len(prefix):] not in named]
        if unnamed and not dry_run:
            for first in range(0, len(unnamed), page):
                self.blobs.drop(*unnamed[first:first + page])
        return len(unnamed)

    def ensure_indexed(self) -> None:
        """A store written before the (kind, state) indexes existed gets them, once: every job is read a page
        at a time into its index (O(jobs), one time), then a marker says it is done. After that, one GET per
        process."""
        if self._indexed:
            return
        if self.redis.exists(self.keys.indexed):
            self._indexed = True
            return
        start = 0
        while ids := texts(self.redis.zrange(self.keys.jobs, start, start + INDEX_PAGE_IDS - 1)):
            self._index_page(keys=[], args=[self.keys.prefix, *ids])
            start += len(ids)
        self.redis.set(self.keys.indexed, repr(time.time()))
        self._indexed = True

    def counts(self) -> dict[tuple[str, str], int]:
        """Jobs per (kind, state), from the indexes: one round trip of ZCARDs, whatever the store holds."""
        self.ensure_indexed()
        pairs = [(k.value, s.value) for k in Kind for s in JobState]
        with self.redis.pipeline(transaction=False) as p:
            for kind, state in pairs:
                p.zcard(self.keys.state_index(kind, state))
            return dict(zip(pairs, p.execute(), strict=True))

    # --- waiting ------------------------------------------------------------------------------------

    def finished_cursor(self) -> str:
        """The newest entry of the ended-jobs stream: take it before looking at a state, then block from it,
        and no ending in between is missed."""
        newest = entries(self.redis.xrevrange(self.keys.finished, count=1))
        return newest[0][0] if newest else "0-0"

    def wait_events(self, series_after: Mapping[tuple[str, str], str], finished_after: str, block_ms: int
                    ) -> tuple[builtins.list[tuple[str, str, Chunk]], builtins.list[tuple[str, str]]]:
        """Block until a batch of one of the series ((job id, metric) -> last stream id read) or any job's end.
        Returns ([(job id, metric, chunk)], [(stream id, ended job id)])."""
        named = {self.keys.series(j, name): (j, name) for j, name in series_after}
        wanted = {self.keys.series(j, name): after for (j, name), after in series_after.items()}
        wanted[self.keys.finished] = finished_after
        reply = self.redis.xread(wanted, block=block_ms, count=defaults.HISTORY_READ_ENTRIES)  # type: ignore[arg-type]
        batches: builtins.list[tuple[str, str, Chunk]] = []
        ended: builtins.list[tuple[str, str]] = []
        for key, found in streams(reply):
            for eid, fields in found:
                if key == self.keys.finished:
                    ended.append((eid, text(fields[b"id"])))
                else:
                    batches.append((*named[key], unpack(eid, fields)))
        return batches, ended


def _matches(record: JobRecord, state: str | None, kind: str | None, since: float | None) -> bool:
    """Whether a record read through an index still fits the filters (its state may have moved since)."""
    return ((state is None or record.state == state) and (kind is None or record.kind == kind)
            and (since is None or record.submitted_at >= since))

