"""Metric series in a real Redis: writes fenced by the lease, the record naming its series, the trim a resumed
attempt makes, the waiters' blocking read, retention, and what a point costs (MEMORY USAGE)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from shared.keys import Keys
from shared.store import JobStore
from shared.vocab import JobState

_prefixes = itertools.count()


@pytest.fixture
def store(redis_server, tmp_path: Path) -> JobStore:
    """A store of its own (its own key prefix) holding one queued training job `j1`, whose lease is `me`."""
    s = JobStore(redis_server.client(), Keys(f"sertest{next(_prefixes)}:"), tmp_path)
    s.create("j1", "train", {"iterations": 100}, "cpu")
    s.redis.set(s.keys.lease("j1"), "me")
    return s


def values(n: int, start: float = 0.0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)


def test_writes_go_through_only_while_the_lease_is_held(store: JobStore) -> None:
    """Given the lease held by `me`, my batch is written and the record names the series; given another
    holder, nothing is written (not the entry, not the record's field) and the caller hears it."""
    assert store.series.append("j1", "loss", 0, values(3), lease_holder="me") is not None
    assert store.series.append("j1", "val_loss", 0, values(2), step=10, lease_holder="somebody else") is None
    assert store.redis.exists(store.keys.series("j1", "val_loss")) == 0
    record = store.require("j1")
    assert record.metrics == ["loss"] and "metrics" in record.to_status()
    assert store.redis.hget(store.keys.job("j1"), "series:loss") == b"1"
    store.redis.delete(store.keys.lease("j1"))  # lapsed
    assert store.series.append("j1", "loss", 3, values(3), lease_holder="me") is None
    its, got = store.series.read("j1", "loss")
    assert its.tolist() == [0, 1, 2] and got.tolist() == [0.0, 1.0, 2.0]


def test_a_strided_series_reads_back_by_iteration(store: JobStore) -> None:
    store.series.append("j1", "val_loss", 0, values(3), step=10, lease_holder="me")
    entry = store.series.append("j1", "val_loss", 30, values(2, 3.0), step=10, lease_holder="me")
    assert store.redis.hget(store.keys.job("j1"), "series:val_loss") == b"10"
    its, got = store.series.read("j1", "val_loss")
    assert its.dtype == np.int64 and its.tolist() == [0, 10, 20, 30, 40] and got.tolist() == [0, 1, 2, 3, 4]
    last = store.series.last("j1", "val_loss")
    assert last is not None and last.entry_id == entry and last.end == 50
    assert [c.first for c in store.series.last_chunks("j1", "val_loss", 2)] == [30]
    assert store.require("j1").metrics == ["val_loss"]


def test_a_resume_trims_each_series_back_to_its_checkpoint(store: JobStore) -> None:
    """Given an attempt that wrote on after its checkpoint, resuming keeps each series up to the position the
    checkpoint named, and drops the whole of a series it did not name (started after it)."""
    kept = store.series.append("j1", "loss", 0, values(10), lease_holder="me")
    assert kept is not None
    store.series.append("j1", "loss", 10, values(10, 10.0), lease_holder="me")
    store.series.append("j1", "val_loss", 10, values(1), step=10, lease_holder="me")
    store.series.trim_after("j1", {"loss": kept})
    assert store.series.read("j1", "loss")[0].tolist() == list(range(10))
    assert store.redis.exists(store.keys.series("j1", "val_loss")) == 0
    assert store.require("j1").metrics == ["loss"]
    store.series.trim_after("j1", {})  # a fresh start: nothing kept
    assert store.redis.exists(store.keys.series("j1", "loss")) == 0


def test_an_old_history_without_a_record_field_is_trimmed_too(store: JobStore) -> None:
    """Given a loss history written before records named their series, a resume still trims it."""
    key = store.keys.series("j1", "loss")
    kept = store.redis.xadd(key, {"i": 0, "t": "f4", "d": values(5).tobytes()}).decode()
    store.redis.xadd(key, {"i": 5, "t": "f4", "d": values(5).tobytes()})
    assert store.require("j1").metrics == []
    store.series.trim_after("j1", {"loss": kept})
    assert store.series.read("j1", "loss")[0].tolist() == list(range(5))


def test_waiters_wake_for_any_series_and_for_endings(store: JobStore) -> None:
    cursor = store.finished_cursor()
    store.series.append("j1", "loss", 0, values(4), lease_holder="me")
    store.series.append("j1", "accuracy", 0, values(1), step=5, lease_holder="me")
    batches, ended = store.wait_events({("j1", "loss"): "0-0", ("j1", "accuracy"): "0-0"}, cursor, 100)
    assert sorted((job, name, c.first, c.step, len(c.values)) for job, name, c in batches) == [
        ("j1", "accuracy", 0, 5, 1), ("j1", "loss", 0, 1, 4)]
    assert ended == []
    assert store.mark_finished("j1", JobState.SUCCEEDED, summary={}, lease_holder="me")
    _, ended = store.wait_events({}, cursor, 100)
    assert [job for _, job in ended] == ["j1"]


def test_every_series_expires_with_its_job(redis_server, tmp_path: Path) -> None:
    store = JobStore(redis_server.client(), Keys("serttl:"), tmp_path, history_ttl_s=120)
    store.create("j1", "train", {}, "cpu")
    store.redis.set(store.keys.lease("j1"), "me")
    store.series.append("j1", "loss", 0, values(3), lease_holder="me")
    store.series.append("j1", "val_loss", 0, values(1), step=10, lease_holder="me")
    assert store.mark_finished("j1", JobState.SUCCEEDED, summary={}, lease_holder="me")
    for name in ("loss", "val_loss"):
        assert 0 < store.redis.ttl(store.keys.series("j1", name)) <= 120


@pytest.mark.parametrize("step,points,bound", [(1, 200_000, 5), (10, 20_000, 8)])
def test_what_a_float32_point_costs(store: JobStore, step: int, points: int, bound: int) -> None:
    """Given a float32 series written as the loop writes it (a batch per 1,000 iterations), MEMORY USAGE over
    its points: under 5 bytes each for an every-iteration series (4 for the value, the rest the entry's own
    fields and the stream's nodes, spread over 1,000 points). One measured every 10 iterations spreads the
    same per-entry cost over 100 points."""
    name, per_batch = ("loss", 1000) if step == 1 else ("val_loss", 1000 // step)
    rng = np.random.default_rng(0)
    for k in range(0, points, per_batch):
        batch = rng.standard_normal(per_batch).astype(np.float32)
        store.series.append("j1", name, k * step, batch, step=step, lease_holder="me")
    footprint = store.redis.memory_usage(store.keys.series("j1", name), samples=0)
    print(f"\n{name} every {step}: {footprint:,} bytes for {points:,} points = {footprint / points:.2f} bytes/point")
    assert footprint / points < bound
    assert len(store.series.read("j1", name)[1]) == points
