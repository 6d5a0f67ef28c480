"""`tensorq prune` (producer/commands/operate.py, shared/store.py) against a real Redis: finished jobs that ended
long ago go with everything they own, a page at a time; queued, running and recent ones stay; datasets no job
names go with `--datasets`; bad input is one line, exit 2."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from shared.groups import GroupStore
from shared.keys import Keys
from shared.store import JobStore
from shared.vocab import JobState
from tests.support.cli import Cli, assert_one_line_error
from tests.support.processes import CLOSED_BROKER, start_redis, stop_process, tq_env

DAY_S = 86_400


@pytest.fixture
def server(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server
    stop_process(server.proc)


def aged(store: JobStore, job_id: str, days: float, ended: float | None = None) -> None:
    """Make a job look submitted `days` ago (record and index scores) and, when it ended, ended `ended` days ago."""
    r, keys = store.redis, store.keys
    record = store.require(job_id)
    at = time.time() - days * DAY_S
    r.hset(keys.job(job_id), "submitted_at", repr(at))
    if ended is not None:
        r.hset(keys.job(job_id), "finished_at", repr(time.time() - ended * DAY_S))
    for index in (keys.jobs, keys.state_index(record.kind, record.state)):
        r.zadd(index, {job_id: at}, xx=True)


def everything_of(r, keys: Keys, job_id: str) -> list[str]:
    return sorted(k.decode() for k in r.scan_iter(match=f"{keys.job(job_id)}*"))


def test_prune_deletes_old_finished_jobs_with_all_they_own(server, tmp_path: Path) -> None:
    """
    Given old finished jobs (an op; a training job with two metric series, weights spilled to a file, a
    leftover checkpoint spilled to a file, in a group), old queued and running jobs, and a recent finished one
    When `prune --older-than 7d --dry-run --json` runs, then `prune --older-than 7d`
    Then the dry run counts them and deletes nothing; the real one deletes them and all they own, and nothing else.
    """
    r, keys = server.client(), Keys()
    home = tmp_path / "home"
    store = JobStore(r, keys, home / "artifacts")
    old_op, old_train, old_queued, old_running, recent, late = (f"{i:016x}" for i in range(6))
    store.create_many([(j, "op", {"kind": "op"}, "cpu", {}) for j in (old_op, old_queued, recent, late)]
                      + [(j, "train", {"kind": "train"}, "cpu", {"group": "g1"}) for j in (old_train, old_running)])
    GroupStore(r, keys).create("g1", [old_train, old_running], [], "sweep")
    assert store.finish_op(old_op, "w", "cpu", time.time(), {"op": "add"}, b"x" * 600) == "ok"  # its own key
    assert store.begin(old_train, "h", "w", "cpu") == "ok"
    r.xadd(keys.series(old_train, "loss"), {"i": 0, "d": b"1234"})
    r.xadd(keys.series(old_train, "val_loss"), {"i": 0, "d": b"1234"})
    r.hset(keys.job(old_train), mapping={"series:loss": 1, "series:val_loss": 10})
    weights = home / "artifacts" / old_train / "weights.safetensors"
    ckpt = home / "artifacts" / old_train / "checkpoint.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"w")
    ckpt.write_bytes(b"c")
    assert store.mark_finished(old_train, JobState.SUCCEEDED, summary={}, lease_holder="h")
    r.hset(keys.job(old_train), "artifact:weights", f"file:{weights}")
    r.set(keys.artifact(old_train, "weights"), f"file:{weights}")
    r.set(keys.checkpoint(old_train), f"file:{ckpt}")  # as one left behind would be
    assert store.begin(old_running, "h2", "w", "cpu") == "ok"
    store.mark_finished(recent, JobState.FAILED, error="boom")
    store.mark_finished(late, JobState.CANCELLED, error="cancelled")
    for job_id in (old_op, old_train, old_queued, old_running):
        aged(store, job_id, 10, ended=9 if job_id in (old_op, old_train) else None)
    aged(store, late, 10, ended=1)  # submitted long ago, ended recently: kept
    cli = Cli(tq_env(server.url, home))

    dry = cli("prune", "--older-than", "7d", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"deleted": 2, "dry_run": True, "kinds": {"op": 1, "train": 1, "run": 0}}
    assert store.get(old_op) is not None and weights.exists()

    done = cli("prune", "--older-than", "7d")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "deleted 2 finished jobs that ended more than 7d ago (op 1, train 1)"
    assert everything_of(r, keys, old_op) == [] and everything_of(r, keys, old_train) == []
    assert not weights.exists() and not ckpt.exists() and not weights.parent.exists()
    assert GroupStore(r, keys).require("g1").job_ids == [old_running]
    for index in (keys.jobs, keys.state_index("op", "succeeded"), keys.state_index("train", "succeeded")):
        assert r.zscore(index, old_op) is None and r.zscore(index, old_train) is None
    assert [store.state(j) for j in (old_queued, old_running, recent, late)] == [
        JobState.QUEUED, JobState.RUNNING, JobState.FAILED, JobState.CANCELLED]
    assert sorted(j.id for j in store.list(limit=10)) == sorted([old_queued, old_running, recent, late])


def test_prune_pages_through_and_filters_by_kind_and_state(server, tmp_path: Path) -> None:
    """
    Given 25 old finished op jobs (some ending recently, some failed) and old training jobs
    When prune runs with a page of 4, only for ops that succeeded
    Then it deletes exactly the old succeeded ops, whichever page each was on.
    """
    r, keys = server.client(), Keys()
    store = JobStore(r, keys, tmp_path)
    ops = [f"a{i:015x}" for i in range(25)]
    trains = [f"b{i:015x}" for i in range(3)]
    store.create_many([(j, "op", {"kind": "op"}, "cpu", {}) for j in ops]
                      + [(j, "train", {"kind": "train"}, "cpu", {}) for j in trains])
    for n, job_id in enumerate(ops):
        if n % 5 == 4:
            store.mark_finished(job_id, JobState.FAILED, error="boom")
        else:
            store.finish_op(job_id, "w", "cpu", time.time(), {}, b"x")
        aged(store, job_id, 30 - n, ended=1 if n % 3 == 0 else 20 - n / 2)
    for job_id in trains:
        store.mark_finished(job_id, JobState.SUCCEEDED, summary={})
        aged(store, job_id, 30, ended=20)
    due = [j for n, j in enumerate(ops) if n % 5 != 4 and n % 3 != 0]
    assert store.prune(time.time() - 7 * DAY_S, ["op"], ["succeeded"], dry_run=True, page=4) == {"op": len(due)}
    assert store.prune(time.time() - 7 * DAY_S, ["op"], ["succeeded"], page=4) == {"op": len(due)}
    assert [j for j in ops + trains if store.get(j) is None] == due
    assert r.zcard(keys.state_index("op", "succeeded")) == len(ops) - len(ops) // 5 - len(due)


def test_prune_datasets_deletes_only_those_no_job_names(server, tmp_path: Path) -> None:
    """
    Given two stored datasets, one named by a training job's spec
    When `prune --datasets` runs (dry, then for real)
    Then only the other goes; submitting a job by reference to it afterwards says it is gone.
    """
    r, keys = server.client(), Keys()
    store = JobStore(r, keys, tmp_path)
    kept_blob, gone_blob = b"kept dataset", b"gone dataset"
    kept, gone = hashlib.sha256(kept_blob).hexdigest(), hashlib.sha256(gone_blob).hexdigest()
    store.blobs.put_dataset(kept, kept_blob)
    store.blobs.put_dataset(gone, gone_blob)
    store.create("00000000000000d1", "train", {"kind": "train", "data": {"sha256": kept, "name": "k"}}, "cpu")
    cli = Cli(tq_env(server.url, tmp_path / "home"))
    dry = cli("prune", "--datasets", "--dry-run", "--json")
    assert json.loads(dry.stdout) == {"deleted": 0, "dry_run": True, "kinds": {}, "datasets": 1}
    assert store.blobs.has_dataset(gone)
    done = cli("prune", "--datasets")
    assert done.returncode == 0 and done.stdout.strip() == "deleted 1 dataset no job names", done.stderr
    assert store.blobs.has_dataset(kept) and not store.blobs.has_dataset(gone)

    ref = {"sha256": gone, "name": "gone", "rows": 4, "inputs": 2, "outputs": 1}
    again = cli("submit", "-f", str(_job_file(tmp_path, ref)))
    assert_one_line_error(again, 2, f"dataset {gone[:12]} is no longer in the broker")


def _job_file(tmp_path: Path, ref: dict) -> Path:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"jobs": [{"kind": "train", "data": ref, "iterations": 1}]}))
    return path


@pytest.mark.parametrize(("args", "fragment"), [
    (["--older-than", "7x"], "--older-than: expected a duration like 7d, 12h or 30m (got '7x')"),
    (["--older-than", "7d", "--state", "running"], "running jobs are not finished and are never pruned"),
    (["--older-than", "7d", "--state", "queued"], "queued jobs are not finished"),
    (["--older-than", "7d", "--kind", "nope"], "'nope' is not one of"),
    (["--older-than", "7d", "--state", "done"], "'done' is not one of"),
    ([], "give --older-than DURATION"),
])
def test_bad_input_is_one_line_before_the_broker_is_needed(tmp_path, args, fragment) -> None:
    assert_one_line_error(Cli(tq_env(CLOSED_BROKER, tmp_path))("prune", *args), 2, fragment)
