"""The job store: job records, their lifecycle (queued, running, ended) and the job index, in Redis. A job's
metric series (shared/series.py), blobs (shared/blobs.py) and lease (shared/leases.py) are parts it holds
as attributes: `store.series`, `store.blobs`, `store.leases`.

It is the one source of truth for what users see; Celery's own bookkeeping is not consulted.
"""

from __future__ import annotations

import builtins
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
from shared.blobs import ARTIFACT_NAMES, Blobs
from shared.errors import BadInput, JobNotFound
from shared.keys import Keys
from shared.leases import Leases
from shared.metric_names import LOSS
from shared.replies import entries, streams, text, texts
from shared.series import Chunk, Series, names_in, unpack
from shared.vocab import FINISHED_STATES, JobState, Kind

if TYPE_CHECKING:
    import redis

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
# then commits its result here unless the job has ended meanwhile (cancelled, or done by a redelivery).
# KEYS: job, artifact, finished stream; ARGV: worker, device, started, finished, summary, where, blob, ttl,
# maxlen, job id, key prefix.
_FINISH_OP = stats.LUA + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return state end
tq_account(ARGV[11], KEYS[1], ARGV[10], 'succeeded', tonumber(ARGV[4]), tonumber(ARGV[3]))
local f = redis.call('HMGET', KEYS[1], 'kind', 'submitted_at', 'attempts')
if not f[3] and f[1] and f[2] then tq_observe(ARGV[11], 'wait', f[1], tonumber(ARGV[3]) - tonumber(f[2])) end
redis.call('SET', KEYS[2], ARGV[7])
redis.call('HSET', KEYS[1], 'state', 'succeeded', 'worker', ARGV[1], 'device', ARGV[2], 'started_at', ARGV[3],
           'finished_at', ARGV[4], 'summary', ARGV[5], 'artifact:result', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if tonumber(ARGV[8]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[8])
  redis.call('EXPIRE', KEYS[2], ARGV[8])
  redis.call('ZADD', ARGV[11] .. 'jobs:expiring', tonumber(ARGV[4]) + tonumber(ARGV[8]), ARGV[10])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', 'id', ARGV[10], 'state', 'succeeded')
return 'ok'
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
        h = {text(k): text(v) for k, v in raw.items()}

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
            summary=json.loads(h["summary"]) if h.get("summary") else None,
            artifacts=sorted(k.removeprefix("artifact:") for k in h if k.startswith("artifact:")),
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
    artifacts: dict[str, bytes] | None = None
    lease_holder: str | None = None


class JobStore:
    def __init__(self, client: redis.Redis, keys: Keys, artifact_dir: Path, history_ttl_s: int | None = None) -> None:
        self.redis = client
        self.keys = keys
        self.artifact_dir = artifact_dir
        self.history_ttl_s = history_ttl_s  # None: keep finished jobs forever
        self.series = Series(client, keys)
        self.blobs = Blobs(client, keys, artifact_dir)
        self.leases = Leases(client, keys)
        self._cancel = client.register_script(_CANCEL)
        self._begin = client.register_script(_BEGIN)
        self._finish_op = client.register_script(_FINISH_OP)
        self._account = client.register_script(stats.ACCOUNT)
        self._index_page = client.register_script(_INDEX_PAGE)
        self._indexed = False  # known to hold every job in its (kind, state) index

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
                p.hset(self.keys.job(job_id), mapping={
                    "kind": kind, "state": JobState.QUEUED.value, "queue": queue, "spec": json.dumps(spec),
                    "submitted_at": repr(now), **{k: v for k, v in links.items() if v is not None}})
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
                      error: str | None = None, artifacts: dict[str, bytes] | None = None,
                      lease_holder: str | None = None) -> bool:
        """The end of a job: its artifacts, summary or error, its state; its checkpoint goes. With
        `lease_holder`, only while that lease is held (a transaction watching it), and the lease goes too;
        False when the job was taken over meanwhile and nothing was written."""
        ending = Ending(job_id, state, summary, error, artifacts, lease_holder)
        checkpoint_file = self.blobs.file_of(self.keys.checkpoint(job_id))  # goes with the checkpoint, below
        if lease_holder is None:
            self.mark_finished_many([ending])
        else:
            import redis

            with self.redis.pipeline(transaction=True) as p:
                try:
                    if not self.leases.watch(p, job_id, lease_holder):
                        return False
                    # only its lease holder adds a series, so the names read now are all it will have
                    fields = p.hkeys(self.keys.job(job_id)) if self.history_ttl_s else []
                    p.multi()
                    self._end_into(p, ending, self.series.keys_of(job_id, fields))
                    p.delete(self.keys.lease(job_id))
                    p.execute()
                except redis.WatchError:
                    return False
        if checkpoint_file is not None:
            checkpoint_file.unlink(missing_ok=True)
        return True

    def mark_finished_many(self, endings: list[Ending]) -> None:
        series = self._series_keys([e.job_id for e in endings])
        with self.redis.pipeline(transaction=False) as p:
            for e in endings:
                self._end_into(p, e, series[e.job_id])
            p.execute()

    def _series_keys(self, job_ids: Iterable[str]) -> dict[str, list[str]]:
        """Each job's series keys, to expire with it: read (one round trip) only when finished jobs expire."""
        job_ids = list(job_ids)
        if not self.history_ttl_s:
            return {j: [] for j in job_ids}
        with self.redis.pipeline(transaction=False) as p:
            for job_id in job_ids:
                p.hkeys(self.keys.job(job_id))
            return {j: self.series.keys_of(j, fields) for j, fields in zip(job_ids, p.execute(), strict=True)}

    def _account_into(self, p: Any, job_id: str, state: JobState, now: float) -> None:
        """Queue the index move (and an ending's counts) of a state change, before the change itself."""
        self._account(keys=[self.keys.job(job_id)], args=[self.keys.prefix, job_id, state.value, repr(now)], client=p)

    def _state_indexes(self) -> list[str]:
        return [self.keys.state_index(k.value, s.value) for k in Kind for s in JobState]

    def _end_into(self, p: Any, e: Ending, series_keys: list[str]) -> None:
        now = time.time()
        self._account_into(p, e.job_id, e.state, now)
        fields = {"state": e.state.value, "finished_at": repr(now)}
        if e.summary is not None:
            fields["summary"] = json.dumps(e.summary)
        if e.error is not None:
            fields["error"] = e.error
        for name, blob in (e.artifacts or {}).items():
            fields[f"artifact:{name}"] = self.blobs.put(self.keys.artifact(e.job_id, name), e.job_id, name, blob, p)
        p.hset(self.keys.job(e.job_id), mapping=fields)
        p.hdel(self.keys.job(e.job_id), "cancel_requested")
        p.srem(self.keys.running, e.job_id)
        p.delete(self.keys.checkpoint(e.job_id))
        self._expire(p, e.job_id, series_keys)
        p.xadd(self.keys.finished, {"id": e.job_id, "state": e.state.value},
               maxlen=defaults.FINISHED_STREAM_MAXLEN, approximate=True)

    def finish_op(self, job_id: str, worker: str, device: str, started_at: float, summary: dict[str, Any],
                  result: bytes) -> str:
        """Commit an op job's result and end it `succeeded`, in one round trip; or, when it had ended already
        (cancelled, or finished by another delivery), or has no record, change nothing and say so."""
        keys, args = self._finish_op_call(job_id, worker, device, started_at, summary, result)
        return text(self._finish_op(keys=keys, args=args))

    def finish_ops(self, ops: list[tuple[str, str, str, float, dict[str, Any], bytes]]) -> list[str]:
        """`finish_op` for many ops in one pipeline: `ok`, `missing`, or the state each had already ended in."""
        with self.redis.pipeline(transaction=False) as p:
            for op in ops:
                keys, args = self._finish_op_call(*op)
                self._finish_op(keys=keys, args=args, client=p)
            return texts(p.execute())

    def _finish_op_call(self, job_id: str, worker: str, device: str, started_at: float, summary: dict[str, Any],
                        result: bytes) -> tuple[list[str], list[Any]]:
        blob, where = self.blobs.spill(job_id, "result", result)
        keys = [self.keys.job(job_id), self.keys.artifact(job_id, "result"), self.keys.finished]
        args = [worker, device, repr(started_at), repr(time.time()), json.dumps(summary), where, blob,
                self.history_ttl_s or 0, defaults.FINISHED_STREAM_MAXLEN, job_id, self.keys.prefix]
        return keys, args

    def _expire(self, p: redis.client.Pipeline, job_id: str, series_keys: list[str]) -> None:
        if self.history_ttl_s:  # retention: the job and all it made expire together
            p.expire(self.keys.job(job_id), self.history_ttl_s)
            for key in series_keys:
                p.expire(key, self.history_ttl_s)
            for name in ARTIFACT_NAMES:
                p.expire(self.keys.artifact(job_id, name), self.history_ttl_s)
            p.zadd(self.keys.expiring, {job_id: time.time() + self.history_ttl_s})  # swept from the indexes

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
            if self.history_ttl_s:
                series = self._series_keys([job_id])[job_id]
                with self.redis.pipeline() as p:
                    self._expire(p, job_id, series)
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
        """Take jobs whose record expired (TENSORQ_HISTORY_TTL) out of the indexes; returns how many. Costs
        O(jobs expired since the last sweep, at most `batch`), never O(store). A record still there (another
        host's clock) is looked at again when its TTL says; one made persistent leaves the expiring set."""
        now = time.time()
        due = texts(self.redis.zrangebyscore(self.keys.expiring, "-inf", now, start=0, num=batch))
        if not due:
            return 0
        with self.redis.pipeline(transaction=False) as p:
            for job_id in due:
                p.ttl(self.keys.job(job_id))
            ttls = p.execute()
        gone = [j for j, ttl in zip(due, ttls, strict=True) if ttl == -2]
        later = {j: now + max(ttl, 1) for j, ttl in zip(due, ttls, strict=True) if ttl >= 0}
        with self.redis.pipeline(transaction=False) as p:
            if gone:
                p.zrem(self.keys.jobs, *gone)
                for index in self._state_indexes():
                    p.zrem(index, *gone)
            if later:
                p.zadd(self.keys.expiring, later)
            done = [j for j in due if j not in later]
            if done:
                p.zrem(self.keys.expiring, *done)
            p.execute()
        return len(gone)

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

