"""Poisoned messages pushed straight into the queues: the job they name ends `failed` with a clear reason,
a message that names no job is logged and dropped, nothing is ever unpickled, and the worker keeps serving
(the same process: nothing restarted it)."""

from __future__ import annotations

import json
import os
import pickle

import pytest
from kombu import Connection, Exchange, Producer

from producer.client import new_job_id
from tests.support.processes import wait_until

VALID = {"kind": "train", "iterations": 3, "hidden_size": 4}
MARKER = "/tmp/tensorq-poison-was-unpickled"


class Booby:
    """Unpickling this writes a marker file: proof that somebody unpickled it."""

    def __reduce__(self):
        return (open, (MARKER, "w"))


@pytest.fixture
def worker_pid(registry, cpu_worker) -> int:
    [node] = cpu_worker.nodes(registry)
    return node["pid"]


def record(client, kind: str = "train") -> str:
    job_id = new_job_id()
    client.store.create(job_id, kind, {}, "cpu")
    return job_id


def publish_raw(redis_server, job_id: str, body: bytes, content_type: str, task: str = "tensorq.train") -> None:
    """A Celery-protocol-2 envelope around an arbitrary body, published with kombu alone."""
    with Connection(redis_server.url) as conn:
        Producer(conn).publish(body, exchange=Exchange("cpu", type="direct"), routing_key="cpu",
                               content_type=content_type, content_encoding="binary" if content_type.endswith(
                                   "serialize") else "utf-8",
                               headers={"id": job_id, "task": task, "lang": "py", "argsrepr": "", "kwargsrepr": ""})


def failed_with(client, job_id: str, fragment: str) -> None:
    def ended() -> bool:
        return client.store.state(job_id) is not None and client.store.state(job_id).finished

    wait_until(ended, 30, f"job {job_id} to fail")
    r = client.store.require(job_id)
    assert r.state == "failed" and fragment in (r.error or ""), (r.state, r.error)


CORPUS = [
    ("unexpected kwargs", {"kwargs": {"spec": VALID, "extra": 1}}, "unexpected arguments ['extra']"),
    ("missing kwargs", {"kwargs": {}}, "no spec"),
    ("positional args", {"args": [VALID]}, "positional arguments"),
    ("wrong types", {"kwargs": {"spec": {**VALID, "hidden_size": "big"}}}, "hidden-size:"),
    ("spec not an object", {"kwargs": {"spec": "rm -rf /"}}, "a job spec must be an object"),
    ("unknown field", {"kwargs": {"spec": {**VALID, "evil": True}}}, "evil: unknown field"),
]


@pytest.mark.parametrize("name,send,fragment", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_task_arguments_fail_their_job(client, worker_pid, registry, cpu_worker, name, send, fragment) -> None:
    job_id = record(client)
    client.celery.send_task("tensorq.train", task_id=job_id, queue="cpu", **send)
    failed_with(client, job_id, fragment)
    assert cpu_worker.nodes(registry)[0]["pid"] == worker_pid


def test_an_unknown_task_fails_its_job(client, worker_pid, registry, cpu_worker) -> None:
    job_id = record(client)
    client.celery.send_task("tensorq.format_disk", kwargs={"spec": VALID}, task_id=job_id, queue="cpu")
    failed_with(client, job_id, "unknown task 'tensorq.format_disk'")
    assert cpu_worker.nodes(registry)[0]["pid"] == worker_pid


def test_a_pickle_body_is_refused_unopened(client, redis_server, worker_pid, registry, cpu_worker) -> None:
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    job_id = record(client)
    publish_raw(redis_server, job_id, pickle.dumps(((Booby(),), {}, {})), "application/x-python-serialize")
    failed_with(client, job_id, "Refusing to deserialize untrusted content of type pickle")
    assert not os.path.exists(MARKER), "the worker unpickled a message"
    assert cpu_worker.nodes(registry)[0]["pid"] == worker_pid


def test_a_garbage_json_body_fails_its_job(client, redis_server, worker_pid, registry, cpu_worker) -> None:
    job_id = record(client)
    publish_raw(redis_server, job_id, b"\xff{not json", "application/json")
    failed_with(client, job_id, "cannot decode it")
    assert cpu_worker.nodes(registry)[0]["pid"] == worker_pid


def test_items_that_are_not_messages_are_dropped_and_the_worker_serves_on(client, redis_server, worker_pid,
                                                                          registry, cpu_worker, cli) -> None:
    """Given garbage bytes, JSON that is no envelope and a message naming no job, each is logged and dropped;
    then a valid job succeeds on the same worker process."""
    r = redis_server.client()
    r.lpush("cpu", b"\x00\xff garbage \x80")
    r.lpush("cpu", json.dumps({"not": "an envelope"}))
    r.lpush("cpu", json.dumps([1, 2, 3]))
    r.lpush("cpu", json.dumps({"properties": {}, "body": ""}))  # an envelope without a delivery tag
    client.celery.send_task("tensorq.train", kwargs={"spec": {"kind": "nope"}}, task_id="no-such-job", queue="cpu")
    done = cli("submit", "train", "--iterations", "5", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "succeeded"
    assert cpu_worker.nodes(registry)[0]["pid"] == worker_pid
    log = cpu_worker.log.read_text()
    assert "dropped an item from a queue that is not a task message" in log
    assert "not a task message: {'not': 'an envelope'}" in log
    assert r.llen("cpu") == 0
