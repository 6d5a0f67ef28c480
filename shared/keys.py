"""Every Redis key tensorq writes, in one place (the prefix defaults to `tensorq:`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "tensorq:"

    def job(self, job_id: str) -> str:
        """Hash: the job record (kind, spec, state, queue, worker, device, times, error, summary)."""
        return f"{self.prefix}job:{job_id}"

    def series(self, job_id: str, name: str) -> str:
        """Stream: one metric series of the job, one entry per batch of points (`i` first iteration, `s` step,
        absent for 1, `t` dtype, `d` packed values). `loss` keeps the key its history always had."""
        if name == "loss":
            return f"{self.prefix}job:{job_id}:loss"
        return f"{self.prefix}job:{job_id}:metric:{name}"

    def artifact(self, job_id: str, name: str) -> str:
        """String: an artifact's bytes (safetensors), or a manifest of its chunks, or `url:<url>` of its object."""
        return f"{self.prefix}job:{job_id}:artifact:{name}"

    def dataset(self, sha256: str) -> str:
        """String: a dataset's bytes (safetensors `x`, `y`), stored once under their SHA-256 however many jobs
        train on it (shared/datasets.py); kept until deleted (no job owns it)."""
        return f"{self.prefix}dataset:{sha256}"

    def chunk(self, blob_key: str, generation: str, index: int) -> str:
        """String: chunk `index` of one generation of a blob too large for one value (an artifact, a checkpoint, a
        dataset), whose key holds the manifest (shared/chunked.py; its Lua `tq_chunk_keys` builds the same names).
        Written with a provisional TTL; kept, expired and deleted with the blob's key."""
        return f"{blob_key}:{generation}:{index}"

    def lease(self, job_id: str) -> str:
        """String with a TTL: `<node> <token>` of the worker running the job; gone = nobody runs it."""
        return f"{self.prefix}job:{job_id}:lease"

    def checkpoint(self, job_id: str) -> str:
        """String: the latest checkpoint (safetensors: weights, RNG state; metadata: iteration, history position)."""
        return f"{self.prefix}job:{job_id}:ckpt"

    @property
    def finished(self) -> str:
        """Stream, capped: one entry per job that ended (`id`, `state`): what waiters block on."""
        return f"{self.prefix}finished"

    @property
    def running(self) -> str:
        """Set: ids of jobs in state `running`, which the reaper checks for lapsed leases."""
        return f"{self.prefix}running"

    @property
    def jobs(self) -> str:
        """Sorted set: every job id, scored by submit time."""
        return f"{self.prefix}jobs"

    @property
    def indexed(self) -> str:
        """String: set once every job written before the (kind, state) indexes existed is in them."""
        return f"{self.prefix}jobs:indexed"

    def state_index(self, kind: str, state: str) -> str:
        """Sorted set: ids of the jobs of one kind in one state, scored by submit time (`list` filters, the
        exporter's counts); kept by the same script or transaction that changes the job's state."""
        return f"{self.prefix}jobs:{kind}:{state}"

    @property
    def expiring(self) -> str:
        """Sorted set: ids of finished jobs whose record expires (TENSORQ_HISTORY_TTL), scored by when; an
        expired id leaves the indexes when the store sweeps it (`list`, a metrics scrape)."""
        return f"{self.prefix}jobs:expiring"

    @property
    def stats(self) -> str:
        """Hash of counters: `lapsed`, `resumed`, `handed_back`, `finished:<kind>:<state>` (shared/stats.py)."""
        return f"{self.prefix}stats"

    def histogram(self, what: str, kind: str) -> str:
        """Hash: a histogram of job seconds (`what`: run or wait) for one kind: `b<i>` counts per bucket of
        shared/stats.py BUCKETS_S (not cumulative), `sum`, `count`."""
        return f"{self.prefix}stats:{what}:{kind}"

    def group(self, group_id: str) -> str:
        """Hash: a sweep's or job file's group (created_at, size, swept fields, source)."""
        return f"{self.prefix}group:{group_id}"

    def group_jobs(self, group_id: str) -> str:
        """List: the group's job ids, in submit order."""
        return f"{self.prefix}group:{group_id}:jobs"

    def node(self, name: str) -> str:
        """Hash with a TTL: a worker's heartbeat (device, queues, state, current job)."""
        return f"{self.prefix}node:{name}"

    @property
    def nodes(self) -> str:
        """Sorted set: worker node names, scored by their last heartbeat."""
        return f"{self.prefix}nodes"

    @property
    def replicated(self) -> str:
        """Pub/sub channel nobody listens on: a PUBLISH there before a WAIT (shared/replication.py)."""
        return f"{self.prefix}replicated"
