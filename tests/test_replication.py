"""WAIT where it matters (shared/replication.py): only where the primary has replicas, and a submit that finds
the primary changed under it (a failover) writes again what the new one lacks, so no job said to be queued is
lost. A fake client for the decisions; the session's real redis-server for the submit."""

from __future__ import annotations

from typing import Any

import pytest

from shared import replication
from shared.keys import Keys
from shared.replication import Primary, Replication


class FakeRedis:
    """INFO replication and the settle pipeline (PUBLISH, WAIT, INFO), as a primary would answer them."""

    def __init__(self, replid: str, replicas: int, acked: int = 1) -> None:
        self.info_reply = {"role": "master", "master_replid": replid, "connected_slaves": replicas}
        self.acked = acked
        self.sent: list[tuple[Any, ...]] = []

    def info(self, section: str) -> dict[str, Any]:
        return dict(self.info_reply)

    def pipeline(self, transaction: bool = True) -> FakeRedis:
        return self

    def __enter__(self) -> FakeRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def publish(self, *args: Any) -> None:
        self.sent.append(("publish", *args))

    def wait(self, *args: Any) -> None:
        self.sent.append(("wait", *args))

    def execute(self) -> list[Any]:
        return [0, self.acked, dict(self.info_reply)]


def test_no_replicas_nothing_to_wait_for() -> None:
    fake = FakeRedis("a" * 40, replicas=0)
    r = Replication(fake, Keys())  # type: ignore[arg-type]
    assert r.settle(r.primary()) and fake.sent == []


def test_with_a_replica_one_round_trip_publish_then_wait() -> None:
    fake = FakeRedis("a" * 40, replicas=1)
    r = Replication(fake, Keys())  # type: ignore[arg-type]
    assert r.settle(r.primary())
    assert fake.sent == [("publish", "tensorq:replicated", b""), ("wait", 1, replication.defaults.REPLICA_WAIT_MS)]


def test_a_new_primary_is_told_apart_by_its_replication_id() -> None:
    fake = FakeRedis("a" * 40, replicas=1)
    r = Replication(fake, Keys())  # type: ignore[arg-type]
    before = r.primary()
    fake.info_reply["master_replid"] = "b" * 40  # the replica promoted: a new replication id
    assert not r.settle(before)
    assert r.primary() == Primary("b" * 40, 1)  # read as it is now


def test_no_replica_in_time_is_logged_and_the_count_read_again(caplog) -> None:
    fake = FakeRedis("a" * 40, replicas=1, acked=0)
    r = Replication(fake, Keys())  # type: ignore[arg-type]
    assert r.settle(r.primary())
    assert "no replica confirmed" in caplog.text and r._seen is None


def test_a_submit_the_primary_changed_under_writes_again_what_the_new_one_lacks(redis_server, monkeypatch) -> None:
    """Given a primary with a replica that, once the submit has written, turns out replaced by one lacking the
    job's record, then the submit writes the record again and sends the message again (a second message is
    dropped by the worker that gets it second); the job is there, queued."""
    from producer.client import Client, UnservedQueueWarning

    queue, r = "replication-test", redis_server.client()
    client = Client(redis_server.url)
    seen = iter([Primary("old", 1), Primary("new", 1)])
    monkeypatch.setattr(Replication, "primary", lambda self: next(seen))
    settles = []

    def settle(self: Replication, before: Primary) -> bool:
        settles.append(before)
        if len(settles) == 1:  # the failover: the new primary lacks what was written
            r.delete(*r.keys(f"tensorq:job:{job_ids[0]}"))
            return False
        return True

    job_ids: list[str] = []
    original_create = client.store.create_many
    monkeypatch.setattr(client.store, "create_many", lambda records: (job_ids.extend(rec[0] for rec in records),
                                                                      original_create(records))[1])
    monkeypatch.setattr(Replication, "settle", settle)
    try:
        with pytest.warns(UnservedQueueWarning):  # no worker here: the message only has to be sent
            job = client.submit_train(queue=queue, device="cpu", iterations=5, input_size=4, hidden_size=4,
                                      output_size=2, batch_size=2)
        assert [b.replication_id for b in settles] == ["old", "new"]
        assert job_ids == [job.id, job.id]  # written twice: the second time on the new primary
        assert job.status().state == "queued" and r.llen(queue) == 2
    finally:
        r.delete(queue)
        client.store.delete(*job_ids[:1])
