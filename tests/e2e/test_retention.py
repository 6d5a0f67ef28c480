"""Retention and the compact op record (shared/settings.py RETENTION, shared/store.py, shared/blobs.py) against a
real Redis and the session's real CPU worker: finished op jobs expire after TENSORQ_OP_TTL (7 days unless set),
training jobs are kept unless TENSORQ_HISTORY_TTL says, record, result and index entries go together; an op job's
small result lives in its record, and records written the old way still read."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from shared import defaults, settings
from shared.keys import Keys
from shared.store import JobStore
from shared.tensors import load_safetensors, safetensors_bytes
from shared.vocab import JobState, Kind
from tests.e2e.test_store_indexes import expiring_ids
from tests.support.cli import Cli, assert_one_line_error
from tests.support.processes import CLOSED_BROKER, start_redis, stop_process, tq_env

WEEK_S = 7 * 86_400


@pytest.fixture
def redis_client(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server.client()
    stop_process(server.proc)


def test_the_retention_table_by_kind(monkeypatch) -> None:
    """
    Given no setting, ops are kept 7 days and every other kind forever
    When TENSORQ_HISTORY_TTL is set, it is every kind's, ops included, unless TENSORQ_OP_TTL says
    And TENSORQ_OP_TTL of 0 or none keeps ops forever.
    """
    monkeypatch.delenv("TENSORQ_OP_TTL", raising=False)
    assert settings.retention(None) == {"op": WEEK_S, "train": None, "run": None}
    assert set(settings.retention(None)) == set(Kind.values())
    assert settings.retention(3600) == {"op": 3600, "train": 3600, "run": 3600}
    monkeypatch.setenv("TENSORQ_OP_TTL", "60")
    assert settings.retention(3600) == {"op": 60, "train": 3600, "run": 3600}
    for forever in ("0", "none", "None"):
        monkeypatch.setenv("TENSORQ_OP_TTL", forever)
        assert settings.retention(None)["op"] is None


@pytest.mark.parametrize("bad", ["-5", "soon", "7d"])
def test_a_bad_op_ttl_is_one_line(tmp_path, bad) -> None:
    done = Cli(tq_env(CLOSED_BROKER, tmp_path, TENSORQ_OP_TTL=bad))("list")
    assert_one_line_error(done, 2, "TENSORQ_OP_TTL must be a whole number of seconds, or 0 or none")


def test_a_real_op_job_is_kept_a_week_in_one_compact_record(client, cpu_worker, cli) -> None:
    """
    Given the session worker with the default retention
    When an op job and a tiny training job end
    Then the op's record expires in 7 days with its result inside it (no key of its own) and is listed as
    expiring, the training job has no TTL
    And status, result, list and the exporter read the op as before (its summary whole, worker included).
    """
    op = client.submit_op("add", [[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]], device="cpu", dtype="float32")
    train = client.submit_train(iterations=3, batch_size=4, input_size=3, hidden_size=3, output_size=2, device="cpu")
    assert op.wait(timeout=60).state == "succeeded" and train.wait(timeout=120).state == "succeeded"
    r, keys = client.store.redis, client.store.keys
    assert WEEK_S - 60 < r.ttl(keys.job(op.id)) <= WEEK_S
    assert not r.exists(keys.artifact(op.id, "result"))
    assert op.id in expiring_ids(r, keys)
    assert r.ttl(keys.job(train.id)) == -1 and r.ttl(keys.artifact(train.id, "weights")) == -1
    assert train.id not in expiring_ids(r, keys)
    assert r.object("encoding", keys.job(op.id)) in (b"ziplist", b"listpack")  # Redis's default settings

    assert op.result().tolist() == [[6.0, 8.0], [10.0, 12.0]]
    assert client.gather([op])[0].tolist() == [[6.0, 8.0], [10.0, 12.0]]
    status = json.loads(cli("status", op.id, "--json").stdout)
    assert status["artifacts"] == ["result"] and status["priority"] == "normal"
    assert status["summary"]["worker"] == status["worker"] and status["summary"]["op"] == "add"
    assert set(status["summary"]) == {"op", "shape", "dtype", "seconds", "device", "worker", "torch", "cuda",
                                      "tensorq"}
    assert status["spec"]["kind"] == "op" and status["spec"]["a"]["shape"] == [2, 2]
    result = json.loads(cli("result", op.id, "--json").stdout)
    assert result["data"] == [[6.0, 8.0], [10.0, 12.0]]
    listed = json.loads(cli("list", "--kind", "op", "--state", "succeeded", "--limit", "100", "--json").stdout)
    assert op.id in [j["id"] for j in listed]


def test_with_a_short_op_ttl_everything_an_op_made_goes_and_training_jobs_stay(redis_client, tmp_path) -> None:
    """
    Given an op retention of 1 s and none for training jobs
    When an op succeeds with a small result (inline), another with a large one (its own key), one fails, and a
    training job succeeds
    Then the ops' records and result keys expire, the next sweep takes them out of every index, and the training
    job is still there and listed.
    """
    r, keys = redis_client, Keys()
    store = JobStore(r, keys, tmp_path, retention={"op": 1, "train": None, "run": None})
    small, large, failed, trained = (f"{i:016x}" for i in range(4))
    store.create_many([(j, "op", {"kind": "op", "op": "add"}, "cpu", {}) for j in (small, large, failed)]
                      + [(trained, "train", {"kind": "train"}, "cpu", {})])
    blob = safetensors_bytes({"result": np.arange(300, dtype=np.float32)})
    assert store.finish_op(small, "w", "cpu", time.time(), {"op": "add", "worker": "w"},
                           safetensors_bytes({"result": np.ones(2, np.float32)})) == "ok"
    assert store.finish_op(large, "w", "cpu", time.time(), {"op": "add"}, blob) == "ok"
    assert r.exists(keys.artifact(large, "result")) and 0 < r.ttl(keys.artifact(large, "result")) <= 1
    assert load_safetensors(store.blobs.get_artifact(large, "result"))["result"].tolist() == list(range(300))
    assert store.fail_if_waiting(failed, "bad message") is None
    assert store.begin(trained, "h", "w", "cpu") == "ok"
    assert store.mark_finished(trained, JobState.SUCCEEDED, summary={"final_loss": 1.0},
                               artifacts={"weights": b"w" * 100}, lease_holder="h")
    assert sorted(expiring_ids(r, keys)) == [small, large, failed]
    time.sleep(2.2)
    for key in (keys.job(small), keys.job(large), keys.artifact(large, "result"), keys.job(failed)):
        assert not r.exists(key), key
    assert [rec.id for rec in store.list()] == [trained]  # list sweeps first
    assert {pair: n for pair, n in store.counts().items() if n} == {("train", "succeeded"): 1}
    assert r.zcard(keys.expiring) == 0 and not list(r.scan_iter(match=f"{keys.expiring}:*"))
    assert r.ttl(keys.job(trained)) == -1 and r.exists(keys.artifact(trained, "weights"))


def test_records_written_the_old_way_still_read(redis_client, tmp_path) -> None:
    """
    Given a finished op record as tensorq wrote it before (a hash table: spaced JSON, the worker in the summary,
    `priority`, the result in its own key) and an expiring entry of the old kind (the id itself)
    When it is read, its result fetched, and the sweep meets its entry after it expired
    Then it reads as it did, and its entry leaves the indexes.
    """
    r, keys = redis_client, Keys()
    store = JobStore(r, keys, tmp_path)
    job_id, result = "00000000000000aa", safetensors_bytes({"result": np.eye(2, dtype=np.float32)})
    summary = {"op": "add", "shape": [2, 2], "dtype": "float32", "worker": "old@host", "device": "cpu"}
    r.hset(keys.job(job_id), mapping={
        "kind": "op", "state": "succeeded", "queue": "cpu", "spec": json.dumps({"kind": "op", "op": "add"}),
        "submitted_at": "1000.5", "priority": "normal", "worker": "old@host", "device": "cpu",
        "finished_at": "1001.5", "summary": json.dumps(summary), "artifact:result": "redis", "attempts": "1"})
    r.set(keys.artifact(job_id, "result"), result)
    r.zadd(keys.jobs, {job_id: 1000.5})
    r.zadd(keys.state_index("op", "succeeded"), {job_id: 1000.5})
    record = store.require(job_id)
    assert (record.summary, record.spec, record.artifacts, record.priority) == (
        summary, {"kind": "op", "op": "add"}, ["result"], "normal")
    assert store.blobs.get_artifacts([job_id], "result") == [result]

    r.expire(keys.job(job_id), 1)
    r.zadd(keys.expiring, {job_id: time.time() + 1})
    time.sleep(1.6)
    assert store.sweep_expired() == 1
    assert r.zcard(keys.jobs) == 0 and r.zcard(keys.state_index("op", "succeeded")) == 0
    assert r.zcard(keys.expiring) == 0


def test_long_values_are_stored_in_pieces_and_rewritten_whole(redis_client, tmp_path) -> None:
    """
    Given a record whose error is several pieces long
    When it is written again, shorter
    Then each reads back whole, and no piece of the longer one is left.
    """
    r, keys = redis_client, Keys()
    store = JobStore(r, keys, tmp_path)
    store.create("00000000000000bb", "train", {"kind": "train", "note": "x" * 300}, "cpu")
    long_error = "boom " * 60
    store.mark_finished("00000000000000bb", JobState.FAILED, error=long_error)
    fields = {k.decode() for k in r.hkeys(keys.job("00000000000000bb"))}
    assert {"error#1", "error#4", "spec#4"} <= fields
    assert r.object("encoding", keys.job("00000000000000bb")) in (b"ziplist", b"listpack")
    record = store.require("00000000000000bb")
    assert record.error == long_error and record.spec["note"] == "x" * 300
    store.mark_finished("00000000000000bb", JobState.FAILED, error="short")
    assert not {k.decode() for k in r.hkeys(keys.job("00000000000000bb"))} & {f"error#{i}" for i in range(1, 8)}
    assert store.require("00000000000000bb").error == "short"


def test_a_value_too_long_for_pieces_is_stored_whole(redis_client, tmp_path) -> None:
    r, keys = redis_client, Keys()
    store = JobStore(r, keys, tmp_path)
    spec = {"kind": "train", "note": "y" * (defaults.RECORD_PIECE_BYTES * defaults.RECORD_PIECES_MAX)}
    store.create("00000000000000cc", "train", spec, "cpu")
    assert not [k for k in r.hkeys(keys.job("00000000000000cc")) if b"#" in k]
    assert store.require("00000000000000cc").spec == spec
