"""The Prometheus exporter behind `tensorq metrics`: a collector that reads Redis at scrape time.

A scrape costs O(queues + workers), never O(jobs): queue depths are list lengths, job counts are the sizes of
the store's (kind, state) indexes, counters and histograms are small hashes kept by the scripts that change
a job's state (shared/stats.py), workers are their heartbeats. Labels stay bounded: queue, priority, kind,
state, device and worker names, never a job id.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from shared import stats
from shared.protocol import Queue, queue_for
from shared.registry import NodeRegistry
from shared.store import JobStore
from shared.vocab import JobState, Kind, NodeState, Priority

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# (metric, help) for each counter of the `stats` hash: the table a new counter joins.
COUNTERS = {
    stats.Counter.LAPSED: ("tensorq_lease_lapses", "Running jobs whose lease lapsed (worker died) and were re-queued."),
    stats.Counter.RESUMED: ("tensorq_resumes", "Attempts started for a job that had started before."),
    stats.Counter.HANDED_BACK: ("tensorq_handbacks", "Jobs checkpointed and handed back by a stopping worker."),
}
HISTOGRAMS = {
    stats.Histogram.RUN: ("tensorq_job_run_seconds", "Seconds from a job's (last) start to its end."),
    stats.Histogram.WAIT: ("tensorq_job_wait_seconds", "Seconds from a job's submission to its first start."),
}
_LEVEL_SUFFIXES = tuple(f".{p.value}" for p in Priority if p != Priority.NORMAL)


@dataclass
class Snapshot:
    """What one scrape read from Redis."""

    depth: dict[tuple[str, str], int] = field(default_factory=dict)  # (base queue, priority) -> messages
    oldest_s: dict[str, float] = field(default_factory=dict)  # base queue -> age of its oldest head job
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, state) -> jobs
    counters: dict[str, float] = field(default_factory=dict)  # the `stats` hash
    histograms: dict[tuple[str, str], dict[bytes, bytes]] = field(default_factory=dict)  # (what, kind) -> hash
    nodes: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def base_queue(name: str) -> str:
    """`gpu.high` -> `gpu`: the base queue of one of its priority levels."""
    for suffix in _LEVEL_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def read(store: JobStore, nodes: NodeRegistry, extra_queues: tuple[str, ...] = ()) -> Snapshot:
    """Everything a scrape reports, in a handful of round trips."""
    started = time.perf_counter()
    store.sweep_expired()  # expired records leave the indexes before they are counted
    snap = Snapshot(nodes=nodes.live(), jobs=store.counts())
    bases = sorted({Queue.GPU.value, Queue.CPU.value, *extra_queues,
                    *(base_queue(q) for n in snap.nodes for q in n.get("queues") or [])})
    levels = [(b, p.value) for b in bases for p in Priority]
    r = store.redis
    with r.pipeline(transaction=False) as p:
        p.hgetall(store.keys.stats)
        for what in stats.Histogram:
            for kind in Kind:
                p.hgetall(store.keys.histogram(what.value, kind.value))
        for base, priority in levels:
            p.llen(queue_for(base, priority))
            p.lindex(queue_for(base, priority), -1)  # consumed from the right: the next message out
        replies = p.execute()
    snap.counters = {k.decode(): float(v) for k, v in replies[0].items()}
    i = 1
    for what in stats.Histogram:
        for kind in Kind:
            snap.histograms[(what.value, kind.value)] = replies[i]
            i += 1
    heads: dict[str, list[str]] = {}
    for (base, priority), depth, head in zip(levels, replies[i::2], replies[i + 1::2], strict=True):
        snap.depth[(base, priority)] = int(depth)
        job_id = _job_of(head) if head else None
        if job_id:
            heads.setdefault(base, []).append(job_id)
    snap.oldest_s = _oldest(r, store, heads, bases)
    snap.seconds = time.perf_counter() - started
    return snap


def _job_of(message: bytes) -> str | None:
    """The job a queued Celery message runs: its task id, or for a batch the first op's id."""
    try:
        envelope = json.loads(message)
        headers = envelope.get("headers") or {}
        if headers.get("task") == "tensorq.tensor_ops":
            body = json.loads(base64.b64decode(envelope["body"]))
            return str(body[1]["jobs"][0]["id"])
        return str(headers.get("id") or "") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None  # a poisoned message: the worker drops it; it has no age to report


def _oldest(r: redis.Redis, store: JobStore, heads: dict[str, list[str]], bases: list[str]) -> dict[str, float]:
    """Per base queue, the age (since submission) of the oldest of the messages its levels hand out next."""
    ids = [(base, job_id) for base, found in heads.items() for job_id in found]
    with r.pipeline(transaction=False) as p:
        for _, job_id in ids:
            p.hget(store.keys.job(job_id), "submitted_at")
        submitted = p.execute() if ids else []
    now = time.time()
    out = dict.fromkeys(bases, 0.0)
    for (base, _), at in zip(ids, submitted, strict=True):
        if at:
            out[base] = max(out[base], now - float(at))
    return out


def families(snap: Snapshot) -> Iterator[Metric]:
    """The snapshot as Prometheus metric families (pure: tested without Redis)."""
    depth = GaugeMetricFamily("tensorq_queue_depth", "Messages waiting in each priority level of each queue.",
                              labels=["queue", "priority"])
    for (queue, priority), n in sorted(snap.depth.items()):
        depth.add_metric([queue, priority], n)
    yield depth
    oldest = GaugeMetricFamily("tensorq_queue_oldest_seconds",
                               "Age since submission of the oldest job next in line in each queue (0: empty).",
                               labels=["queue"])
    for queue, age in sorted(snap.oldest_s.items()):
        oldest.add_metric([queue], age)
    yield oldest
    jobs = GaugeMetricFamily("tensorq_jobs", "Jobs in the store by state and kind.", labels=["state", "kind"])
    for (kind, state), n in sorted(snap.jobs.items()):
        jobs.add_metric([state, kind], n)
    yield jobs
    finished = CounterMetricFamily("tensorq_jobs_finished", "Jobs that ended, by kind and final state.",
                                   labels=["kind", "state"])
    failures = CounterMetricFamily("tensorq_failures", "Jobs that ended failed, by kind.", labels=["kind"])
    for kind in Kind:
        for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            finished.add_metric([kind.value, state.value],
                                snap.counters.get(stats.finished_field(kind.value, state.value), 0.0))
        failures.add_metric([kind.value], snap.counters.get(stats.finished_field(kind.value, "failed"), 0.0))
    yield finished
    yield failures
    for counter, (name, text) in COUNTERS.items():
        yield CounterMetricFamily(name, text, value=snap.counters.get(counter.value, 0.0))
    for what, (name, text) in HISTOGRAMS.items():
        histogram = HistogramMetricFamily(name, text, labels=["kind"])
        for kind in Kind:
            buckets, total = stats.cumulative(snap.histograms.get((what.value, kind.value), {}))
            histogram.add_metric([kind.value], buckets, total)
        yield histogram
    yield from _worker_families(snap.nodes)
    yield GaugeMetricFamily("tensorq_scrape_seconds", "Seconds this scrape spent reading Redis.",
                            value=snap.seconds)


def _worker_families(nodes: list[dict[str, Any]]) -> Iterator[Metric]:
    by_device: dict[str, int] = {}
    busy = GaugeMetricFamily("tensorq_worker_busy", "1 while the worker runs a job, else 0.", labels=["worker"])
    used = GaugeMetricFamily("tensorq_worker_gpu_memory_used_bytes", "GPU memory in use on the worker's device.",
                             labels=["worker"])
    total = GaugeMetricFamily("tensorq_worker_gpu_memory_total_bytes", "GPU memory of the worker's device.",
                              labels=["worker"])
    for node in nodes:
        name = str(node.get("name") or "?")
        by_device[str(node.get("device") or "starting")] = by_device.get(str(node.get("device") or "starting"), 0) + 1
        busy.add_metric([name], 1.0 if node.get("state") == NodeState.RUNNING else 0.0)
        free, capacity = node.get("memory_free_bytes"), node.get("memory_total_bytes")
        if capacity is not None and free is not None:
            used.add_metric([name], float(capacity - free))
            total.add_metric([name], float(capacity))
    workers = GaugeMetricFamily("tensorq_workers", "Live workers (by heartbeat) per device.", labels=["device"])
    for device, n in sorted(by_device.items()):
        workers.add_metric([device], n)
    yield from (workers, busy, used, total)


class TensorqCollector(Collector):
    """Reads Redis on every scrape; a broker that does not answer gives `tensorq_broker_up 0` and no more."""

    def __init__(self, store: JobStore, nodes: NodeRegistry, extra_queues: tuple[str, ...] = ()) -> None:
        self.store = store
        self.nodes = nodes
        self.extra_queues = extra_queues

    def collect(self) -> Iterator[Metric]:
        try:
            snap = read(self.store, self.nodes, self.extra_queues)
        except Exception as e:  # a scrape must answer: say the broker is down rather than fail the request
            from shared.redis_conn import last_failure_message

            log.warning("scrape: %s", last_failure_message(e))
            yield GaugeMetricFamily("tensorq_broker_up", "1 when the broker answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("tensorq_broker_up", "1 when the broker answered this scrape.", value=1)
        yield from families(snap)
