"""The job store's indexes and counters (shared/store.py, shared/stats.py) against a real Redis: every state
change keeps the (kind, state) indexes equal to what the records say, `list` filters answer from them, and
expired records leave them."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from shared.keys import Keys
from shared.leases import Leases
from shared.store import JobStore
from shared.vocab import JobState, Kind
from tests.support.cli import Cli
from tests.support.processes import start_redis, stop_process, tq_env


@pytest.fixture
def redis_client(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server.client()
    stop_process(server.proc)


def records_by_scan(r, keys: Keys) -> list[dict[str, str]]:
    """Every job record, read the slow way (a scan of all keys): what the indexes must agree with."""
    out = []
    for key in r.scan_iter(match=f"{keys.prefix}job:*", count=1000):
        name = key.decode()
        if name.count(":") != 2:  # job:<id>:loss, :artifact:..., :lease, :ckpt
            continue
        raw = {k.decode(): v.decode() for k, v in r.hgetall(key).items()}
        out.append({"id": name.rsplit(":", 1)[1], **raw})
    return out


def test_every_state_change_keeps_the_indexes_and_counts_true(redis_client, tmp_path: Path):
    """
    Given jobs of both kinds
    When they start, finish, fail, are cancelled, handed back, lapse and resume
    Then the per-(kind, state) indexes hold exactly the jobs the records say are in that state
    And the counters say one hand-back, one lapse, two resumes and the endings.
    """
    r, keys = redis_client, Keys()
    store, leases = JobStore(r, keys, tmp_path), Leases(r, keys)
    ids = [f"{i:016x}" for i in range(8)]
    store.create_many([(j, "op" if i < 4 else "train", {}, "cpu", {}) for i, j in enumerate(ids)])
    op_ok, op_cancel, op_fail, op_left, train_back, train_lapse, train_ok, train_left = ids

    assert store.finish_op(op_ok, "w", "cpu", time.time() - 0.02, {"op": "add"}, b"result") == "ok"
    assert store.request_cancel(op_cancel) == "cancelled"
    assert store.fail_if_waiting(op_fail, "bad message") is None
    assert store.begin(train_back, "h1", "w", "cpu") == "ok"
    store.mark_requeued(train_back)  # a stopping worker hands it back...
    leases.release(train_back, "h1")
    assert store.begin(train_back, "h2", "w", "cpu") == "ok"  # ...and another resumes it
    assert store.begin(train_lapse, "h3", "w", "cpu") == "ok"
    r.delete(keys.lease(train_lapse))  # its worker died: the lease lapses
    assert leases.reap() == [train_lapse]
    assert store.begin(train_lapse, "h4", "w", "cpu") == "ok"
    assert store.begin(train_ok, "h5", "w", "cpu") == "ok"
    assert store.mark_finished(train_ok, JobState.SUCCEEDED, summary={"final_loss": 1.0}, lease_holder="h5")

    truth = Counter((rec["kind"], rec["state"]) for rec in records_by_scan(r, keys))
    assert {pair: n for pair, n in store.counts().items() if n} == dict(truth)
    for kind in Kind:
        for state in JobState:
            members = {m.decode() for m in r.zrange(keys.state_index(kind.value, state.value), 0, -1)}
            expected = {rec["id"] for rec in records_by_scan(r, keys)
                        if rec["kind"] == kind.value and rec["state"] == state.value}
            assert members == expected, (kind, state)
    assert store.state(op_left) == JobState.QUEUED and store.state(train_left) == JobState.QUEUED
    stats = {k.decode(): int(float(v)) for k, v in r.hgetall(keys.stats).items()}
    assert stats == {"handed_back": 1, "lapsed": 1, "resumed": 2, "finished:op:succeeded": 1,
                     "finished:op:cancelled": 1, "finished:op:failed": 1, "finished:train:succeeded": 1}
    run_op = {k.decode(): float(v) for k, v in r.hgetall(keys.histogram("run", "op")).items()}
    assert run_op["count"] == 1 and run_op["sum"] >= 0.02  # the op's start and end, as committed
    wait_train = {k.decode(): float(v) for k, v in r.hgetall(keys.histogram("wait", "train")).items()}
    assert wait_train["count"] == 3  # first starts only: a resume is not a wait

    store.delete(op_left, train_left)
    assert store.counts()[("op", "queued")] == 0 and store.counts()[("train", "queued")] == 0


def test_list_filters_combine_and_agree_with_a_scan(redis_client, tmp_path: Path):
    """
    Given 300 jobs of both kinds, three groups and mixed endings, submitted over time
    When `list` is asked for each combination of state, kind, since and group
    Then it returns what filtering every record would, newest first.
    """
    from shared.groups import GroupStore

    r, keys = redis_client, Keys()
    store = JobStore(r, keys, tmp_path)
    made = []
    for batch in range(6):
        jobs = [(f"{batch:02x}{i:014x}", "op" if i % 3 else "train", {}, "cpu",
                 {"group": f"g{batch}"}) for i in range(50)]
        store.create_many(jobs)
        GroupStore(r, keys).create(f"g{batch}", [j[0] for j in jobs], [], "sweep")
        made += jobs
        time.sleep(0.02)
    for n, (job_id, *_rest) in enumerate(made):
        if n % 4 == 1:
            store.finish_op(job_id, "w", "cpu", time.time(), {}, b"x")
        elif n % 4 == 2:
            store.mark_finished(job_id, JobState.FAILED, error="boom")
    everything = {rec.id: rec for rec in store.get_many([j[0] for j in made]) if rec is not None}
    cut = everything[made[120][0]].submitted_at

    def expected(state, kind, since, group, limit):
        members = set(GroupStore(r, keys).require(group).job_ids) if group else set(everything)
        fits = [rec for rec in everything.values() if rec.id in members and (state is None or rec.state == state)
                and (kind is None or rec.kind == kind) and (since is None or rec.submitted_at >= since)]
        return [rec.id for rec in sorted(fits, key=lambda rec: (rec.submitted_at, rec.id), reverse=True)][:limit]

    for state in (None, "queued", "succeeded", "failed", "running"):
        for kind in (None, "op", "train"):
            for since in (None, cut):
                for group in (None, "g4"):
                    for limit in (5, 400):
                        got = [rec.id for rec in store.list(state, limit, kind, since, group)]
                        assert got == expected(state, kind, since, group, limit), (state, kind, since, group, limit)


def expiring_ids(r, keys: Keys) -> list[str]:
    """The ids the expiring set lists: in its buckets (`@<n>`, a list each), or (older stores) as members."""
    out = []
    for member in (m.decode() for m in r.zrange(keys.expiring, 0, -1)):
        out += [i.decode() for i in r.lrange(f"{keys.expiring}:{member[1:]}", 0, -1)] if member[0] == "@" else [member]
    return out


def test_expired_records_leave_the_indexes(redis_client, tmp_path: Path):
    """
    Given TENSORQ_HISTORY_TTL of 1 s
    When jobs end (an op committed by its script, a cancel, a failure) and their records expire
    Then the next sweep takes them out of every index, and `list` and the counts no longer see them.
    """
    r, keys = redis_client, Keys()
    store = JobStore(r, keys, tmp_path, history_ttl_s=1)
    ids = [f"{i:016x}" for i in range(4)]
    store.create_many([(j, "op", {}, "cpu", {}) for j in ids])
    store.finish_op(ids[0], "w", "cpu", time.time(), {}, b"x")
    store.request_cancel(ids[1])
    store.mark_finished(ids[2], JobState.FAILED, error="boom")
    assert sorted(expiring_ids(r, keys)) == ids[:3]
    time.sleep(1.6)
    assert not r.exists(keys.job(ids[0]))
    assert [rec.id for rec in store.list()] == [ids[3]]  # list sweeps first
    assert {pair: n for pair, n in store.counts().items() if n} == {("op", "queued"): 1}
    assert r.zcard(keys.jobs) == 1 and r.zcard(keys.expiring) == 0


def test_the_cli_lists_a_group_by_state(tmp_path: Path):
    """
    Given a group of four jobs, two of them finished
    When `tensorq list --group G --state queued --json` runs
    Then it prints the two queued ones, newest first; an unknown group is one line and exit 2.
    """
    from shared.groups import GroupStore

    server = start_redis(tmp_path / "redis")
    try:
        r, keys = server.client(), Keys()
        store = JobStore(r, keys, tmp_path)
        ids = [f"{i:016x}" for i in range(4)]
        for job_id in ids:
            store.create(job_id, "op", {}, "cpu", group="gg")
            time.sleep(0.01)
        GroupStore(r, keys).create("gg", ids, [], "sweep")
        store.finish_op(ids[1], "w", "cpu", time.time(), {}, b"x")
        store.mark_finished(ids[3], JobState.FAILED, error="boom")
        cli = Cli(tq_env(server.url, tmp_path / "home"))
        done = cli("list", "--group", "gg", "--state", "queued", "--json")
        assert done.returncode == 0, done.stderr
        assert [j["id"] for j in json.loads(done.stdout)] == [ids[2], ids[0]]
        missing = cli("list", "--group", "nosuch")
        assert missing.returncode == 2 and missing.stderr.strip() == "error: no group 'nosuch'"
    finally:
        stop_process(server.proc)


def test_a_store_written_before_the_indexes_gets_them_once(redis_client, tmp_path: Path):
    """
    Given records written the way tensorq wrote them before the (kind, state) indexes (record + `jobs` only)
    When a new store lists or counts them
    Then every one is found by its filters and counted, and the build is not repeated
    """
    r, keys = redis_client, Keys()
    old = [(f"{i:016x}", "train" if i % 3 else "op", ["succeeded", "failed", "queued"][i % 3]) for i in range(2_500)]
    with r.pipeline(transaction=False) as p:
        for n, (job_id, kind, state) in enumerate(old):
            p.hset(keys.job(job_id), mapping={"kind": kind, "state": state, "queue": "cpu", "spec": "{}",
                                              "submitted_at": repr(1_000.0 + n)})
            p.zadd(keys.jobs, {job_id: 1_000.0 + n})
        p.execute()
    store = JobStore(r, keys, tmp_path)
    expected = Counter((kind, state) for _, kind, state in old)
    assert {k: v for k, v in store.counts().items() if v} == dict(expected)
    assert [j.id for j in store.list("failed", 5, "train")] == [j for j, k, s in old if (k, s) == ("train", "failed")][
        ::-1][:5]
    assert r.exists(keys.indexed)
    r.delete(keys.state_index("train", "failed"))  # were it built again, this would come back
    assert JobStore(r, keys, tmp_path).list("failed", 5, "train") == []
