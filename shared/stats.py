"""Job statistics kept beside the records, so that a metrics scrape reads a few small keys instead of the jobs:
the per-(kind, state) indexes, counters, and run- and wait-time histograms.

They are written by the same Lua scripts and transactions that change a job's state (shared/store.py,
shared/leases.py), so a count never disagrees with the records it counts. The Lua below builds key names
from the prefix as shared/keys.py does (`jobs:<kind>:<state>`, `stats`, `stats:<what>:<kind>`).
"""

from __future__ import annotations

from enum import Enum

# Upper bounds (seconds) of the histogram buckets, shared by run and wait times: an op takes milliseconds,
# a training run minutes to hours, a wait anything. +Inf is implied after the last.
BUCKETS_S: tuple[float, ...] = (0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class Counter(str, Enum):
    """Fields of the `stats` hash that count events (each ending also counts `finished:<kind>:<state>`)."""

    LAPSED = "lapsed"  # a running job's lease lapsed (its worker died) and a reaper put it back
    RESUMED = "resumed"  # an attempt started for a job that had started before (after a hand-back or lapse)
    HANDED_BACK = "handed_back"  # a stopping worker checkpointed its job and handed it back to its queue


class Histogram(str, Enum):
    RUN = "run"  # from the (last) start to the end, for jobs that started
    WAIT = "wait"  # from submission to the first start


def finished_field(kind: str, state: str) -> str:
    return f"finished:{kind}:{state}"


def cumulative(raw: dict[bytes, bytes]) -> tuple[list[tuple[str, float]], float]:
    """A histogram hash as Prometheus wants it: ([(le, cumulative count), ... ("+Inf", count)], sum)."""
    counts = {k.decode(): float(v) for k, v in raw.items()}
    out, total = [], 0.0
    for i, bound in enumerate(BUCKETS_S, start=1):
        total += counts.get(f"b{i}", 0.0)
        out.append((repr(float(bound)), total))
    total += counts.get(f"b{len(BUCKETS_S) + 1}", 0.0)
    out.append(("+Inf", total))
    return out, counts.get("sum", 0.0)


# Prepended to every script that changes a job's state. `tq_account(prefix, job_key, id, to, now, started)`
# moves the job from its state index to `to`'s (before the caller writes the new state), counts an ending
# and observes its run time: from `started` when given (an op commits start and end together), else from
# the record's `started_at` when it was running.
LUA = """
local TQ_BUCKETS = {@BUCKETS@}
local TQ_FINISHED = {succeeded = true, failed = true, cancelled = true}
local function tq_observe(prefix, what, kind, seconds)
  if seconds < 0 then seconds = 0 end
  local i = #TQ_BUCKETS + 1
  for j, le in ipairs(TQ_BUCKETS) do
    if seconds <= le then i = j break end
  end
  local key = prefix .. 'stats:' .. what .. ':' .. kind
  redis.call('HINCRBY', key, 'b' .. i, 1)
  redis.call('HINCRBY', key, 'count', 1)
  redis.call('HINCRBYFLOAT', key, 'sum', string.format('%.6f', seconds))
end
local function tq_account(prefix, job, id, to, now, started)
  local f = redis.call('HMGET', job, 'kind', 'state', 'submitted_at', 'started_at')
  local kind, from = f[1], f[2]
  if not kind or not from or from == to then return end
  redis.call('ZREM', prefix .. 'jobs:' .. kind .. ':' .. from, id)
  redis.call('ZADD', prefix .. 'jobs:' .. kind .. ':' .. to, tonumber(f[3]) or 0, id)
  if TQ_FINISHED[to] then
    redis.call('HINCRBY', prefix .. 'stats', 'finished:' .. kind .. ':' .. to, 1)
    if started then
      tq_observe(prefix, 'run', kind, now - started)
    elseif from == 'running' and f[4] and f[4] ~= '' then
      tq_observe(prefix, 'run', kind, now - tonumber(f[4]))
    end
  end
end
""".replace("@BUCKETS@", ", ".join(repr(float(b)) for b in BUCKETS_S))

# State changes made outside a script (a transaction or pipeline of plain commands) account through this one,
# queued in the same transaction before the new state is written. KEYS: job; ARGV: prefix, id, to, now.
ACCOUNT = LUA + """
tq_account(ARGV[1], KEYS[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), nil)
return 1
"""
