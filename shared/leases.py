"""Leases: the proof that a worker is still running a job, so a job whose worker died is run again
(and only once) without waiting for the broker's visibility timeout."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shared import defaults, stats
from shared.keys import Keys

if TYPE_CHECKING:
    import redis

# Renew only a lease we still hold: another worker may have taken the job since. (A job takes its lease
# and gives it back in the job store's begin/finish scripts, with its state.)
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# A running job whose lease is gone goes back to `queued`, atomically, so two reapers never both take it
# (and the lapse is counted once). ARGV: job id, key prefix, now.
_REAP = stats.LUA + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then
  redis.call('SREM', KEYS[3], ARGV[1])
  return 0
end
tq_account(ARGV[2], KEYS[1], ARGV[1], 'queued', tonumber(ARGV[3]), nil)
redis.call('HSET', KEYS[1], 'state', 'queued', 'worker', '', 'device', '')
redis.call('HINCRBY', KEYS[1], 'recoveries', 1)
redis.call('HINCRBY', ARGV[2] .. 'stats', 'lapsed', 1)
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""


class Leases:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._renew = client.register_script(_RENEW)
        self._reap = client.register_script(_REAP)

    def renew(self, job_id: str, holder: str) -> bool:
        """Extend our lease; False when it lapsed or another worker took it."""
        return bool(self._renew(keys=[self.keys.lease(job_id)], args=[holder, defaults.LEASE_TTL_S]))

    def holder(self, job_id: str) -> str | None:
        raw = self.redis.get(self.keys.lease(job_id))
        return raw.decode() if raw else None

    def reap(self) -> list[str]:
        """Every running job whose lease has lapsed, now back in state `queued` (the caller re-sends it)."""
        reaped = []
        for raw in self.redis.smembers(self.keys.running):
            job_id = raw.decode()
            keys = [self.keys.job(job_id), self.keys.lease(job_id), self.keys.running]
            if self._reap(keys=keys, args=[job_id, self.keys.prefix, repr(time.time())]):
                reaped.append(job_id)
        return reaped
