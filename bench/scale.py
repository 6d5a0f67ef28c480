"""`python -m bench --scale`: the store at a million jobs. Filtered `list` with 100 and with 1,000,000 job records
(a ratio: indexes, not a scan), the scrape time of `tensorq metrics`, and the bytes of Redis one finished tiny op
job holds (real jobs, run by a real worker, with the default retention), with Redis's default hash encoding and
with `hash-max-listpack-value 512`. `BENCH_SCALE_SIZES=100,10000` makes a quick run."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.measures import A, B, Result, result
from bench.stack import TENSORQ_QUEUE, Stack

SIZES = tuple(int(n) for n in os.environ.get("BENCH_SCALE_SIZES", "100,1000000").split(","))
TRAIN_JOBS = 50  # the few training jobs among the op jobs: what `list --kind train` looks for
BATCH = 10_000
OP_JOBS = 100  # real op jobs measured: their average, each share of a bucket and an index as a full one holds


class ScaleStack(Stack):
    """A Redis on a free port and one tensorq CPU worker (no hand-written Celery worker: nothing to compare)."""

    def start(self) -> ScaleStack:
        self.start_redis_and_tensorq_worker()
        self._wait(self._worker_up, "worker")
        return self

    def _worker_up(self) -> bool:
        import redis

        from shared.keys import Keys
        from shared.registry import NodeRegistry

        return any(n.get("state") == "idle" for n in NodeRegistry(redis.Redis(port=self.port), Keys()).live())


def fill(store: Any, start: int, stop: int, group_size: int = 100) -> None:
    """Finished job records `start`..`stop`-1 as the store leaves them (record, `jobs` and state index entries,
    ending counts, groups of `group_size`), written with pipelines: the TRAIN_JOBS first are training jobs, the
    rest ops."""
    from shared.keys import Keys
    from shared.record_values import compact_result, pieces
    from shared.tensors import safetensors_bytes

    keys: Keys = store.keys
    compact = (",", ":")  # as the store writes them, in pieces of at most 64 bytes
    spec = pieces("spec", json.dumps({"kind": "op", "op": "add", "a": {"dtype": "float32", "shape": [2, 2], "data": A},
                                      "b": {"dtype": "float32", "shape": [2, 2], "data": B}, "device": "cpu"},
                                     separators=compact))
    summary = pieces("summary", json.dumps({"op": "add", "shape": [2, 2], "dtype": "float32", "seconds": 1.2e-05,
                                            "device": "cpu", "torch": "2", "cuda": None, "tensorq": "0.1.0"},
                                           separators=compact))
    import numpy as np

    result = pieces("artifact:result", compact_result(safetensors_bytes({"result": np.ones((2, 2), "float32")}))
                    or b"")
    fields = [x for pair in {**spec, **summary, **result}.items() for x in pair]
    now = time.time()
    for first in range(start, stop, BATCH):
        with store.redis.pipeline(transaction=False) as p:
            scores: dict[str, dict[str, float]] = {"op": {}, "train": {}}
            for n in range(first, min(first + BATCH, stop)):
                job_id, kind = f"{n:016x}", "train" if n < TRAIN_JOBS else "op"
                at = now - (stop - n) * 0.001
                p.execute_command("HSET", keys.job(job_id), "kind", kind, "state", "succeeded", "queue", "cpu",
                                  "submitted_at", repr(at), "group", f"g{n // group_size}", "worker", "bench@host",
                                  "device", "cpu", "started_at", repr(at), "finished_at", repr(at), "attempts", "1",
                                  *fields)
                scores[kind][job_id] = at
                p.rpush(keys.group_jobs(f"g{n // group_size}"), job_id)
                if n % group_size == 0:
                    p.hset(keys.group(f"g{n // group_size}"), mapping={"created_at": repr(at), "size": group_size,
                                                                      "swept": "[]", "source": "bench"})
            for kind, members in scores.items():
                if members:
                    p.zadd(keys.jobs, members)
                    p.zadd(keys.state_index(kind, "succeeded"), members)
                    p.hincrby(keys.stats, f"finished:{kind}:succeeded", len(members))
            p.execute()


def timed(fn: Callable[[], Any], runs: int = 21) -> float:
    """Median seconds of `fn`."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


LISTS: dict[str, Callable[[Any], Any]] = {  # the filters, as `tensorq list` asks them
    "list --kind train --state succeeded --limit 5": lambda s: s.list("succeeded", 5, "train"),
    "list --state succeeded --limit 20": lambda s: s.list("succeeded", 20),
    "list --kind op --since 1h --limit 20": lambda s: s.list(None, 20, "op", time.time() - 3600),
    "list --group g0 --state succeeded --limit 20": lambda s: s.list("succeeded", 20, None, None, "g0"),
}


def op_job_bytes(client: Any) -> tuple[int, dict[str, int]]:
    """Bytes of Redis one finished `add` of two 2x2 float32 operands holds, averaged over OP_JOBS real jobs: its
    keys' MEMORY USAGE (record, result when it has a key of its own), and its share of the indexes it sits in
    (their usage per member: the (kind, state) index, every job's, and the expiring set's bucket lists)."""
    jobs = [client.submit_op("add", A, B, device="cpu", dtype="float32", queue=TENSORQ_QUEUE) for _ in range(OP_JOBS)]
    for job in jobs:
        job.wait(timeout=60)
    store = client.store
    r, keys = store.redis, store.keys

    def usage(key: str) -> int:
        return int(r.memory_usage(key, samples=0) or 0)

    parts = {"record": round(sum(usage(keys.job(j.id)) for j in jobs) / len(jobs)),
             "result": round(sum(usage(keys.artifact(j.id, "result")) for j in jobs) / len(jobs))}
    for name, index in (("jobs index", keys.jobs), ("state index", keys.state_index("op", "succeeded"))):
        parts[name] = round(usage(index) / max(r.zcard(index), 1))
    buckets = [f"{keys.expiring}:{m.decode()[1:]}" for m in r.zrange(keys.expiring, 0, -1) if m.startswith(b"@")]
    listed = sum(r.llen(b) for b in buckets)
    parts["expiring"] = round((sum(usage(b) for b in buckets) + usage(keys.expiring)) / max(listed, 1))
    ids = [j.id for j in jobs]  # gone, for the next measure (another encoding)
    r.delete(*(keys.job(j) for j in ids), *(keys.artifact(j, "result") for j in ids), *buckets, keys.expiring)
    for index in (keys.jobs, keys.state_index("op", "succeeded")):
        r.zrem(index, *ids)
    return sum(parts.values()), parts


def run(as_json: bool) -> int:
    stack = ScaleStack()
    stack.start()
    try:
        from prometheus_client import CollectorRegistry, generate_latest

        from producer.client import Client
        from producer.exporter import TensorqCollector

        client = Client(stack.url)
        store = client.store
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TensorqCollector(store, client.registry))
        listed: dict[str, dict[int, float]] = {name: {} for name in LISTS}
        scrape: dict[int, float] = {}
        made, fill_s = 0, 0.0
        for size in SIZES:
            t0 = time.perf_counter()
            fill(store, made, size)
            fill_s += time.perf_counter() - t0
            made = size
            for name, fn in LISTS.items():
                listed[name][size] = timed(lambda fn=fn: fn(store))
            scrape[size] = timed(lambda: generate_latest(registry))
        results = []
        small, large = SIZES
        for name, at in listed.items():  # as fast as with 100 (ratio, noise allowed) and within 0.5 s
            results.append(within(result(f"{name}, {large:,} jobs vs {small}", at[large], at[small], "s", "<=", 2.0,
                                         f"{at[large] * 1000:.2f} ms at {large:,} (goal <= 500 ms), "
                                         f"{at[small] * 1000:.2f} ms at {small}"), 0.5))
        results.append(within(result(f"metrics scrape, {large:,} jobs vs {small}", scrape[large], scrape[small], "s",
                                     "<=", 2.0, f"{scrape[large] * 1000:.2f} ms at {large:,} (goal <= 100 ms)"), 0.1))
        default_bytes, default_parts = op_job_bytes(client)
        store.redis.config_set("hash-max-listpack-value" if _redis_major(store) >= 7 else "hash-max-ziplist-value",
                               512)
        compact_bytes, compact_parts = op_job_bytes(client)
        results.append(result("bytes of Redis per finished tiny op job (2x2 float32 add)", default_bytes, 1024, "B",
                              "<=", 1.0, f"{default_parts}; with hash-max-listpack-value 512: {compact_bytes} B "
                                         f"{compact_parts}"))
        memory = store.redis.info("memory")["used_memory"]
    finally:
        stack.stop()
    report = {"date": time.strftime("%Y-%m-%d"), "fill_s": round(fill_s, 1), "used_memory_bytes": memory,
              "results": [r.as_dict() for r in results]}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(f"tensorq at scale, {report['date']}: {large:,} job records written in {fill_s:.1f} s, "
              f"Redis using {memory / 2**30:.2f} GiB")
        for r in results:
            print(f"  {'ok ' if r.met else 'MISS'} {r.name}: {r.tensorq:g} {r.unit} vs {r.yardstick:g} {r.unit}: "
                  f"ratio {r.ratio:.3f} (goal {r.goal}) - {r.detail}")
    return 0 if all(r.met for r in results) else 1


def within(r: Result, limit_s: float) -> Result:
    """`r`, missed also when its large-store time is over `limit_s`."""
    return dataclasses.replace(r, met=r.met and r.tensorq <= limit_s)


def _redis_major(store: Any) -> int:
    return int(str(store.redis.info("server")["redis_version"]).split(".")[0])
