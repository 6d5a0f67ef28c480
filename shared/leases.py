"""Leases: the proof that a worker is still running a job, so a job whose worker died is run again
(and only once) without waiting for the broker's visibility timeout.

Everything a lease is lives here: taking it (inside the job store's `begin` script, with the state change),
renewing, releasing, who holds it, reaping lapsed ones, and the fencing condition every write of a running
job is made under (a Lua prelude for scripts, a watched transaction for the ending).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shared import defaults, stats
from shared.keys import Keys
from shared.replies import text

if TYPE_CHECKING:
    import redis

# The lease's Lua verbs, for any script that takes a lease or writes under one.
LUA = """
local function tq_lease_take(key, holder, ttl_s) return redis.call('SET', key, holder, 'NX', 'EX', ttl_s) end
local function tq_lease_held(key, holder) return redis.call('GET', key) == holder end
"""
# Renew only a lease we still hold: another worker may have taken the job since.
_RENEW = LUA + """
if tq_lease_held(KEYS[1], ARGV[1]) then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Release a lease only while we hold it.
_RELEASE = LUA + """
if tq_lease_held(KEYS[1], ARGV[1]) then return redis.call('DEL', KEYS[1]) end
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


def fenced(body: str) -> str:
    """A script that runs `body` only while the lease KEYS[1] is held by ARGV[1], and else returns 0 having
    written nothing: a worker that lost its job (lapsed, taken over) cannot write for it any more."""
    return LUA + "if not tq_lease_held(KEYS[1], ARGV[1]) then return 0 end\n" + body


class Leases:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._renew = client.register_script(_RENEW)
        self._reap = client.register_script(_REAP)
        self._release = client.register_script(_RELEASE)

    def renew(self, job_id: str, holder: str) -> bool:
        """Extend our lease; False when it lapsed or another worker took it."""
        return bool(self._renew(keys=[self.keys.lease(job_id)], args=[holder, defaults.LEASE_TTL_S]))

    def release(self, job_id: str, holder: str) -> None:
        """Give the lease back (a job handed back to its queue); a lease another worker holds is left alone."""
        self._release(keys=[self.keys.lease(job_id)], args=[holder])

    def watch(self, pipe: redis.client.Pipeline, job_id: str, holder: str) -> bool:
        """Start a fenced transaction on `pipe`: watch the lease and say whether `holder` holds it. The MULTI
        that follows commits only if the lease is unchanged until then (else redis.WatchError)."""
        key = self.keys.lease(job_id)
        pipe.watch(key)  # type: ignore[no-untyped-call]
        held = pipe.get(key)
        return held is not None and text(held) == holder

    def holder(self, job_id: str) -> str | None:
        raw = self.redis.get(self.keys.lease(job_id))
        return text(raw) if raw else None

    def reap(self) -> list[str]:
        """Every running job whose lease has lapsed, now back in state `queued` (the caller re-sends it)."""
        reaped: list[str] = []
        for raw in self.redis.smembers(self.keys.running):
            job_id = text(raw)
            keys = [self.keys.job(job_id), self.keys.lease(job_id), self.keys.running]
            if self._reap(keys=keys, args=[job_id, self.keys.prefix, repr(time.time())]):
                reaped.append(job_id)
        return reaped
