"""Redis Sentinel: one `sentinel://` URL for every process, and a failover that costs no job and no iteration.

A primary, its replica and three Sentinels (tests/support/sentinel.py), with passwords for Redis (one that must
be %-encoded in a URL) and for the Sentinels. The replica accepts writes (`replica-read-only no`) only so this
test can make it lack the primary's last writes, as an asynchronous replica may when its primary dies: it is
rewound to an older checkpoint and loss history, consistently (what a replica holds is a prefix of what its
primary wrote), before the Sentinels promote it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.support.cli import Cli, assert_one_line_error
from tests.support.flower import PASSWORD, USER, http_get
from tests.support.processes import REPO, free_port, start_launcher, stop_process, tq_env, wait_until
from tests.support.sentinel import MASTER_NAME, SentinelSet, start_sentinel_set
from tests.support.training import FLAGS, expected_losses

REDIS_PASSWORD = "Tq-s3cret/pw-91f4"  # its `/` must be %-encoded in the URL
SENTINEL_PASSWORD = "sentinel-pw-7c2e"
ITERATIONS, SEED, CHECKPOINT_EVERY = 6_000, 4, 500
QUEUED = [(200, 10 + k) for k in range(5)]  # (iterations, seed) of the jobs waiting behind it


def url_of(s: SentinelSet, redis_password: str = REDIS_PASSWORD, sentinel_password: str = SENTINEL_PASSWORD) -> str:
    """The one URL: Redis's password as the userinfo, the Sentinels' as a query parameter."""
    hosts = ";".join(f"sentinel://127.0.0.1:{x.port}" for x in s.sentinels)
    userinfo = f":{quote(redis_password, safe='')}@"
    return (f"{hosts.replace('sentinel://', 'sentinel://' + userinfo, 1)}/0?master_name={MASTER_NAME}"
            f"&sentinel_password={quote(sentinel_password, safe='')}")


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    started = start_sentinel_set(tmp_path_factory.mktemp("sentinel"), replica_args=("--replica-read-only", "no"),
                                 redis_password=REDIS_PASSWORD, sentinel_password=SENTINEL_PASSWORD)
    try:
        yield started
    finally:
        started.stop()


def redis_at(port: int):
    import redis

    return redis.Redis(host="127.0.0.1", port=port, password=REDIS_PASSWORD, socket_timeout=5)


def test_every_url_form_reaches_the_primary_and_a_bad_one_is_one_line(sentinels, tmp_path) -> None:
    """Given Sentinels and Redis with passwords, the URL with Redis's password as userinfo or as `password=`
    reaches the primary; a wrong Sentinel password, an unknown master_name, and a malformed URL are each one
    line (exit 3, 3 and 2), never showing a password."""
    hosts = ";".join(f"sentinel://127.0.0.1:{x.port}" for x in sentinels.sentinels)
    as_query = (f"{hosts}/0?master_name={MASTER_NAME}&password={quote(REDIS_PASSWORD, safe='')}"
                f"&sentinel_password={SENTINEL_PASSWORD}")
    for url in (url_of(sentinels), as_query):
        listed = Cli(tq_env(url, tmp_path / "home"))("list", "--json")
        assert listed.returncode == 0, listed.stderr
    refused = Cli(tq_env(url_of(sentinels, sentinel_password="wrong-one"), tmp_path / "home"))("list")
    assert_one_line_error(refused, 3, "refused the password (sentinel_password=")
    unknown = Cli(tq_env(url_of(sentinels).replace(MASTER_NAME, "nope"), tmp_path / "home"))("list")
    assert_one_line_error(unknown, 3, "knows a primary named 'nope'")
    malformed = Cli(tq_env(url_of(sentinels).replace(f"master_name={MASTER_NAME}&", ""), tmp_path / "home"))("list")
    assert_one_line_error(malformed, 2, "no master_name")
    for done in (refused, unknown, malformed):
        assert REDIS_PASSWORD not in done.stderr and quote(REDIS_PASSWORD, safe="") not in done.stderr
        assert "wrong-one" not in done.stderr and SENTINEL_PASSWORD not in done.stderr


def test_flower_reads_the_queues_through_the_sentinels(sentinels, tmp_path) -> None:
    """Given a job queued through the Sentinels (on `cpu`, the queue Flower lists when no worker is up), Flower
    started with the same URL counts it (its broker view opens Redis through the Sentinels itself, from the
    options shared/celery_app.py gives it)."""
    url, home = url_of(sentinels), tmp_path / "home"
    submit(Cli(tq_env(url, home)), 10, 1)
    port, log = free_port(), tmp_path / "flower.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "producer", "flower", "--port", str(port), "--basic-auth",
                                 f"{USER}:{PASSWORD}", "--no-persistent"], env=tq_env(url, home), stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO)
    try:
        def queues() -> dict | None:
            assert proc.poll() is None, log.read_text()
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/api/queues/length")
            except OSError:  # not listening yet
                return None
            return json.loads(body) if status == 200 else None

        wait_until(queues, 60, "Flower's queue lengths")
        assert {"name": "cpu", "messages": 1} in queues()["active_queues"]
    finally:
        stop_process(proc)
        redis_at(sentinels.primary.port).delete("cpu")  # the next test's worker has jobs of its own
    assert REDIS_PASSWORD not in log.read_text() and SENTINEL_PASSWORD not in log.read_text()


def test_sigkill_of_the_primary_mid_job_costs_no_job_and_no_iteration(sentinels, tmp_path) -> None:
    """Given a worker at work on a training job with five more queued, and a `tensorq wait` on it, when the
    primary is killed (SIGKILL) and the Sentinels promote a replica that lacks its last checkpoint and losses,
    then the worker, the waiter and the CLI follow the new primary by themselves; every job succeeds; the
    running job resumes from the checkpoint the replica has, and its history equals the note's loop inline,
    value for value (the losses the replica lacked recorded again, those it had not doubled)."""
    url, home = url_of(sentinels), tmp_path / "home"
    cli = Cli(tq_env(url, home))
    primary, replica = redis_at(sentinels.primary.port), redis_at(sentinels.replica.port)
    launcher = start_launcher(url, home, tmp_path / "worker.log", "--gpus", "none")
    waiter = None
    try:
        wait_until(lambda: primary.zcard("tensorq:nodes") >= 1, 90, "the worker's heartbeat")
        job = submit(cli, ITERATIONS, SEED, "--checkpoint-every", str(CHECKPOINT_EVERY))
        queued = [submit(cli, n, seed) for n, seed in QUEUED]
        waiter = subprocess.Popen([sys.executable, "-m", "producer", "wait", job, *queued, "--timeout", "150",
                                   "--json"], env=tq_env(url, home), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        ckpt, losses = f"tensorq:job:{job}:ckpt", f"tensorq:job:{job}:loss"
        wait_until(lambda: replica.exists(ckpt), 60, "the job's first checkpoint on the replica")
        with replica.pipeline(transaction=True) as p:  # one moment of the replica: a checkpoint and its history
            p.get(ckpt)
            p.xrange(losses)
            kept_ckpt, kept_entries = p.execute()
        kept_last, kept_iterations = kept_entries[-1][0], recorded(kept_entries)
        wait_until(lambda: primary.get(ckpt) != kept_ckpt, 60, "a later checkpoint on the primary")

        killed_at = time.time()
        sentinels.kill_primary()
        # the replica has read all it was sent (its link is down once it reads the end): nothing lands after this
        wait_until(lambda: replica.info("replication")["master_link_status"] == "down", 10, "the replica's link down")
        with replica.pipeline(transaction=True) as p:  # the replica now lacks the primary's last writes
            p.set(ckpt, kept_ckpt)
            later = [entry_id for entry_id, _ in replica.xrange(losses, min=f"({kept_last.decode()}")]
            if later:
                p.xdel(losses, *later)
            p.execute()
        assert later, "the primary wrote no losses after the kept checkpoint: nothing to lose"

        def next_iteration_ms() -> int | None:  # the job's first loss batch stored after the kill
            newest = replica.xrevrange(losses, count=1)
            stamp = int(newest[0][0].split(b"-")[0]) if newest else 0
            return stamp if stamp > killed_at * 1000 else None

        sentinels.wait_for_failover(30)
        promoted_in = time.time() - killed_at
        wait_until(next_iteration_ms, 60, "the job recording again")
        resumed_in = next_iteration_ms() / 1000 - killed_at
        print(f"\nkill -9 of the primary -> the replica promoted: {promoted_in:.2f} s; -> the job's next recorded "
              f"iteration: {resumed_in:.2f} s")
        out, err = waiter.communicate(timeout=180)
        log = launcher.log.read_text(errors="replace")
        assert waiter.returncode == 0, (out[-2000:], err, log[-4000:])
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
        stop_process(launcher.proc, 40)
    finals = {j["id"]: j for j in json.loads(out)}
    assert [finals[j]["state"] for j in (job, *queued)] == ["succeeded"] * 6
    assert sentinels.primary_port() == sentinels.replica.port
    resumed_from = finals[job]["summary"]["resumed_from"]
    assert resumed_from is not None and resumed_from <= kept_iterations, (resumed_from, kept_iterations)
    assert history(cli, job) == expected_losses(ITERATIONS, SEED)
    for job_id, (n, seed) in zip(queued, QUEUED, strict=True):
        assert history(cli, job_id) == expected_losses(n, seed)
    for never in ("Unrecoverable error", "giving up", "Traceback"):
        assert never not in log, f"{never!r} in the worker's log:\n{log[-4000:]}"
    assert resumed_in < 30


def submit(cli: Cli, iterations: int, seed: int, *extra: str) -> str:
    done = cli("submit", "train", *FLAGS, "--iterations", str(iterations), "--seed", str(seed), "--device", "cpu",
               *extra, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def recorded(entries: list) -> int:
    """Iterations in a loss stream's entries (each one packed batch of float32 values, step 1)."""
    return sum(len(fields[b"d"]) // 4 for _, fields in entries)


def history(cli: Cli, job_id: str) -> list[float]:
    done = cli("history", job_id, "--format", "json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["loss"])
