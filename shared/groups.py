"""Groups: the jobs one sweep or job file made, kept together so they can be watched, ranked, compared and
cancelled as one experiment."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import JobNotFound
from shared.keys import Keys

if TYPE_CHECKING:
    import redis


@dataclass
class GroupRecord:
    id: str
    created_at: float
    size: int
    swept: list[str]  # the spec fields that vary across the group's jobs
    source: str  # "sweep" or the job file's name
    job_ids: list[str]


class GroupStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def create(self, group_id: str, job_ids: list[str], swept: list[str], source: str) -> None:
        with self.redis.pipeline() as p:
            p.hset(self.keys.group(group_id), mapping={"created_at": repr(time.time()), "size": len(job_ids),
                                                        "swept": json.dumps(swept), "source": source})
            if job_ids:
                p.rpush(self.keys.group_jobs(group_id), *job_ids)
            p.execute()

    def require(self, group_id: str) -> GroupRecord:
        with self.redis.pipeline() as p:
            p.hgetall(self.keys.group(group_id))
            p.lrange(self.keys.group_jobs(group_id), 0, -1)
            raw, ids = p.execute()
        if not raw:
            raise JobNotFound(f"no group {group_id!r}")
        h: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        return GroupRecord(group_id, float(h["created_at"]), int(h["size"]), json.loads(h["swept"]), h["source"],
                           [i.decode() for i in ids])
