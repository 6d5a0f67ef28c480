"""Several hosts (tests/support/hosts.py): a head with Redis, three worker hosts each running `tensorq worker`,
and a laptop that only runs the CLI, each its own network namespace, hostname and disk, on one switch. Nothing
is shared but the network: a job moves between hosts through Redis alone.

A sweep spreads over the worker hosts; a host cut off from the network, or killed whole, loses its training
job to another host, which resumes it from its checkpoint; the head's Redis restarts under running and queued
jobs; a job with 64 MiB of weights moves to another host mid-run and its weights reach the laptop. Every
training history equals the note's loop run inline, value for value.

The hosts are built once for the module and put back between tests (`Cluster.reset`). They need root: these
tests skip elsewhere, and fail in CI (CI=true) when they cannot run."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.store import JobRecord
from tests.note_loop import note_loop
from tests.support.hosts import Cluster, Host, built, unavailable
from tests.support.processes import wait_until
from tests.support.training import FLAGS, expected_losses

pytestmark = pytest.mark.timeout(300)

CPU = ("--device", "cpu")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    problem = unavailable()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the hosts tests, but {problem}", pytrace=False)
        pytest.skip(problem)
    with built(tmp_path_factory.mktemp("hosts")) as made:
        yield made


@pytest.fixture
def hosts(cluster: Cluster) -> Cluster:
    """The module's hosts, as a test expects to find them: every cable in, Redis up, every worker serving."""
    cluster.reset()
    return cluster


def submit(hosts: Cluster, *flags: str) -> str:
    """A training job sent from the laptop; its id."""
    done = hosts.tq("submit", "train", *flags, *CPU, "--json")
    assert done.returncode == 0, done.stderr
    job_id: str = json.loads(done.stdout)["id"]
    return job_id


def record(hosts: Cluster, job_id: str) -> JobRecord:
    record: JobRecord = hosts.client.job(job_id).status()
    return record


def share_done(hosts: Cluster, job_id: str, iterations: int) -> float:
    """The share of its iterations in the job's history (flushed every 0.5 s: finer than the heartbeat)."""
    return len(hosts.client.job(job_id).losses()) / iterations


def checkpointed(hosts: Cluster, job_id: str) -> bool:
    return bool(hosts.redis.client().exists(f"tensorq:job:{job_id}:ckpt"))


def wait_mid_run(hosts: Cluster, job_id: str, iterations: int, share: float) -> Host:
    """Wait until the job is `share` done with a checkpoint behind it; the host running it."""
    wait_until(lambda: share_done(hosts, job_id, iterations) >= share and checkpointed(hosts, job_id), 120,
               f"{share:.0%} of the job, checkpointed")
    return hosts.host_of(record(hosts, job_id).worker)


def wait_running_elsewhere(hosts: Cluster, job_id: str, lost: Host) -> float:
    """Wait until another host runs the job again; when it began there (its record's `started_at`, the worker's
    clock, which is this machine's: exact however late this wait looks)."""
    def elsewhere() -> bool:
        r = record(hosts, job_id)  # a queued job has no worker: state first
        return r.state in ("running", "succeeded") and r.attempts >= 2 and hosts.host_of(r.worker) is not lost

    wait_until(elsewhere, 90, f"the job running on a host other than {lost.name}")
    started_at = record(hosts, job_id).started_at
    assert started_at is not None
    return started_at


def assert_resumed_elsewhere(final: JobRecord, lost: Host, hosts: Cluster, checkpoint_every: int) -> None:
    assert final.state == "succeeded", final.error
    assert hosts.host_of(final.worker) is not lost, final.worker
    assert (final.attempts, final.recoveries) == (2, 1)
    assert final.summary is not None and final.summary["resumed_from"] >= checkpoint_every, final.summary


def test_a_sweep_spreads_over_the_worker_hosts(hosts: Cluster) -> None:
    """Given three idle worker hosts, a sweep of six seeds sent from the laptop runs on every one of them; every
    job succeeds, each history equal to the note's loop."""
    iterations = 1_500
    done = hosts.tq("submit", "train", *FLAGS, "--iterations", str(iterations), "--seeds", "6", *CPU, "--json")
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout)["ids"]
    finals = hosts.client.wait_all([hosts.client.job(j) for j in ids], timeout=120)
    assert [r.state for r in finals] == ["succeeded"] * 6, [r.error for r in finals]
    ran_on = {r.id: hosts.host_of(r.worker).name for r in finals}
    assert set(ran_on.values()) == {h.name for h in hosts.workers}, ran_on
    for r in finals:
        assert hosts.client.job(r.id).losses() == expected_losses(iterations, r.spec["seed"]), r.id


def test_a_host_cut_off_loses_its_job_and_its_late_writes_are_fenced(hosts: Cluster) -> None:
    """Given a host at ~25% of a training job, when its cable is pulled (no reset: its packets vanish), another
    host resumes the job once its lease lapses; healed at once, the cut host's late writes are fenced (its
    worker says the lease is lost): the history equals the note's loop exactly, each iteration once, and the
    cut host's worker serves again."""
    iterations, seed, every = 8_000, 7, 500
    job = submit(hosts, *FLAGS, "--iterations", str(iterations), "--seed", str(seed), "--checkpoint-every", str(every))
    cut = wait_mid_run(hosts, job, iterations, 0.25)
    hosts.network.cut(cut)
    cut_at = time.time()
    expected = expected_losses(iterations, seed)  # run while the lease lapses
    moved_in = wait_running_elsewhere(hosts, job, cut) - cut_at
    hosts.network.heal(cut)
    final = hosts.client.job(job).wait(timeout=180)
    # its late writes: refused, which its worker says; then it serves again
    wait_until(lambda: f"job {job}: lease lost" in hosts.log_of(cut), 60, f"{cut.name}'s late attempt to end the job")
    wait_until(lambda: hosts.serving(cut), 60, f"{cut.name}'s worker serving again after the heal")
    print(f"\n{cut.name} cut off: job {job} running on another host {moved_in:.1f} s later")
    assert_resumed_elsewhere(final, cut, hosts, every)
    assert record(hosts, job).state == "succeeded"  # the cut host changed nothing
    assert hosts.client.job(job).losses() == expected
    assert moved_in < 40


def test_a_host_killed_whole_loses_its_job_to_another_host(hosts: Cluster) -> None:
    """Given a host at ~30% of a training job, when every process of that host is SIGKILLed, another host
    resumes the job from its checkpoint and it succeeds, each iteration once."""
    iterations, seed, every = 6_000, 4, 300
    job = submit(hosts, *FLAGS, "--iterations", str(iterations), "--seed", str(seed), "--checkpoint-every", str(every))
    victim = wait_mid_run(hosts, job, iterations, 0.3)
    victim.kill()
    killed_at = time.time()
    expected = expected_losses(iterations, seed)  # run while the lease lapses
    moved_in = wait_running_elsewhere(hosts, job, victim) - killed_at
    final = hosts.client.job(job).wait(timeout=180)
    print(f"\n{victim.name} killed: job {job} running on another host {moved_in:.1f} s later")
    assert_resumed_elsewhere(final, victim, hosts, every)
    assert hosts.client.job(job).losses() == expected


def test_the_heads_redis_restarts_under_running_and_queued_jobs(hosts: Cluster) -> None:
    """Given three jobs running (checkpointed) and two more queued, when the head's Redis is killed and started
    again from its append-only file (on the head's disk), the same workers reconnect by themselves: every job
    succeeds, each history equal to the note's loop, and a job sent after the restart is served."""
    iterations, every = 4_000, 200
    sent = hosts.tq("submit", "train", *FLAGS, "--iterations", str(iterations), "--seed", "11", "--seeds", "5",
                    "--checkpoint-every", str(every), *CPU, "--json")
    assert sent.returncode == 0, sent.stderr
    seeds = {r.id: r.spec["seed"] for r in hosts.client.jobs(group=json.loads(sent.stdout)["group"])}
    wait_until(lambda: sum(checkpointed(hosts, j) for j in seeds) >= 3, 60, "three jobs checkpointed")
    launchers = {name: proc.pid for name, proc in hosts.launchers.items()}
    states = [record(hosts, j).state for j in seeds]
    hosts.redis.kill()
    down_at = time.monotonic()
    expected = {job_id: expected_losses(iterations, seed) for job_id, seed in seeds.items()}  # during the outage
    time.sleep(max(0.0, down_at + 3 - time.monotonic()))  # an outage of 3 s at least
    hosts.redis.start()
    assert sorted(states) == ["queued"] * 2 + ["running"] * 3, states
    finals = hosts.client.wait_all([hosts.client.job(j) for j in seeds], timeout=240)
    assert [r.state for r in finals] == ["succeeded"] * 5, [r.error for r in finals]
    assert any((r.summary or {}).get("resumed_from") is not None for r in finals), "the restart reached no job"
    for job_id in seeds:
        assert hosts.client.job(job_id).losses() == expected[job_id], job_id
    after = hosts.tq("submit", "op", "mul", "6", "7", *CPU, "--wait", "--json")
    assert after.returncode == 0, after.stderr
    result = hosts.tq("result", json.loads(after.stdout)["id"], "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["data"] == 42, result.stderr
    wait_until(lambda: all(hosts.serving(h) for h in hosts.workers), 60, "every worker serving after the restart")
    assert {name: proc.pid for name, proc in hosts.launchers.items()} == launchers  # none was restarted by us


# 64 MiB of weights (w1 is 4096 x 4096 float32), few iterations on small rows; lr small enough not to diverge.
BIG_SIZES = {"batch_size": 8, "input_size": 4096, "hidden_size": 4096, "output_size": 10}
BIG_LR, BIG_ITERATIONS, BIG_SEED, BIG_EVERY = 1e-8, 30, 2, 5
BIG_FLAGS = [*(f"--{k.replace('_', '-')}={v}" for k, v in BIG_SIZES.items()), f"--lr={BIG_LR}"]


@dataclass
class BigJob:
    id: str
    killed: Host  # the host killed at ~30% of it
    losses: list[float]  # the note's loop, inline
    weights: dict[str, Any]


@pytest.fixture(scope="module")
def big_job(cluster: Cluster) -> BigJob:
    """The 64 MiB job, its host killed whole at ~30% (checkpointed): done, with the note's loop's run."""
    cluster.reset()
    job = submit(cluster, *BIG_FLAGS, "--iterations", str(BIG_ITERATIONS), "--seed", str(BIG_SEED),
                 "--checkpoint-every", str(BIG_EVERY))
    victim = wait_mid_run(cluster, job, BIG_ITERATIONS, 0.3)
    victim.kill()
    # the reference is run while the job's lease lapses
    losses, w1, w2 = note_loop(BIG_SEED, BIG_SIZES["batch_size"], BIG_SIZES["input_size"], BIG_SIZES["hidden_size"],
                               BIG_SIZES["output_size"], learning_rate=BIG_LR, iterations=BIG_ITERATIONS)
    cluster.client.job(job).wait(timeout=240)
    return BigJob(job, victim, losses, {"w1": w1, "w2": w2})


def test_a_job_with_64_mib_of_weights_resumes_on_another_host_with_no_shared_disk(hosts: Cluster,
                                                                                  big_job: BigJob) -> None:
    """Given a job with 64 MiB of weights whose host is killed at ~30%, another host (which shares no disk with
    it) resumes it from its checkpoint, and its history equals the note's loop."""
    final = record(hosts, big_job.id)
    assert_resumed_elsewhere(final, big_job.killed, hosts, BIG_EVERY)
    assert hosts.client.job(big_job.id).losses() == big_job.losses


def test_a_laptop_reads_the_64_mib_weights_equal_to_the_note_loops(hosts: Cluster, big_job: BigJob) -> None:
    """Given that job done, `tensorq result JOB -o FILE` on the laptop (no worker, a disk of its own) writes
    its weights, equal to the note's loop's, bit for bit."""
    from safetensors.torch import load_file

    out = hosts.laptop.home / "weights.safetensors"
    done = hosts.tq("result", big_job.id, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert not out.exists()  # written on the laptop's own disk, which this process sees only through the laptop
    weights = load_file(hosts.laptop.disk(out))
    assert sorted(weights) == ["w1", "w2"] and weights["w1"].nbytes == 64 * 2**20
    for name, expected in big_job.weights.items():
        assert weights[name].equal(expected), name
