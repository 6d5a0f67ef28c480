"""Users' own job functions (`tensorq submit run NAME`), end to end on real workers: kill -9 resumes from the
function's own checkpoint to the uninterrupted history; cancel, failures, timeouts and functions that never
report; params refused before enqueue; routing to the workers that offer a function, and a warning where none
does; sweeps, job files, the client and `tensorq functions`.

Two workers on a queue of this module's own: `fn-tests` has tests/data/jobfns on its PYTHONPATH, so it offers
the test-only functions (tq-fail, tq-silent, tq-steps, tq-strict) besides the example package's (regress,
digits, installed in the test environment); `fn-plain` offers only the example package's."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.keys import Keys
from shared.vocab import READY_NODE_STATES
from tests.support.cli import assert_one_line_error
from tests.support.processes import (
    FAST_LAPSE,
    REPO,
    Launcher,
    kill_9_its_worker,
    start_launcher,
    stop_process,
    wait_until,
)

JOBFNS = REPO / "tests" / "data" / "jobfns"
QUEUE = "fnq"
OFFERING, PLAIN = "fn-tests", "fn-plain"


@dataclass
class Fleet:
    launchers: dict[str, Launcher]  # by --name
    registry: object

    def node(self, name: str) -> str:
        """The node's name as its heartbeat gives it (fn-tests@host)."""
        [node] = self.launchers[name].nodes(self.registry)
        return str(node["name"])

    def ready(self) -> bool:
        for launcher in self.launchers.values():
            assert launcher.proc.poll() is None, f"a launcher exited; log:\n{launcher.log.read_text()[-3000:]}"
            nodes = launcher.nodes(self.registry)
            if len(nodes) != 1 or nodes[0].get("state") not in READY_NODE_STATES:
                return False
        return True


@pytest.fixture(scope="module")
def workers(redis_server, tq_home, registry, tmp_path_factory) -> Iterator[Fleet]:
    logs = tmp_path_factory.mktemp("fn-logs")
    args = ("--gpus", "none", "--queue", QUEUE)
    # started side by side: each takes seconds to import torch, which the two can do at once; 5 s leases, for the
    # kill -9 below
    launchers = {OFFERING: start_launcher(redis_server.url, tq_home, logs / "offering.log", *args, "--name", OFFERING,
                                          PYTHONPATH=str(JOBFNS), **FAST_LAPSE),
                 PLAIN: start_launcher(redis_server.url, tq_home, logs / "plain.log", *args, "--name", PLAIN,
                                       **FAST_LAPSE)}
    fleet = Fleet(launchers, registry)
    try:
        wait_until(fleet.ready, 90, "both workers")
        yield fleet
    finally:
        for launcher in launchers.values():
            stop_process(launcher.proc, 40)


@pytest.fixture
def fleet(workers: Fleet) -> Fleet:
    """Both workers ready (one killed by a test before is back once its launcher has restarted it)."""
    wait_until(workers.ready, 90, "both workers")
    return workers


@pytest.fixture
def testfns_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test functions importable in this process too, as where the producer runs beside them: then the
    in-process CLI checks their params before enqueue. The environment's functions are read once per process,
    so that reading is made again now and after."""
    from shared import functions

    monkeypatch.syspath_prepend(str(JOBFNS))
    functions.offered.cache_clear()
    yield
    functions.offered.cache_clear()


def status(cli, job_id: str) -> dict:
    return json.loads(cli("status", job_id, "--json").stdout)


def submit(cli, *args: str) -> dict:
    done = cli("submit", "run", *args, "--queue", QUEUE, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def finished(cli, job_id: str, timeout: float = 60) -> dict:
    done = cli("wait", job_id, "--timeout", str(timeout), "--json")
    return json.loads(done.stdout)[0]


def history(cli, job_id: str, metric: str = "loss") -> list[float]:
    done = cli("history", job_id, "--metric", metric, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[metric]


def last_number(text: str) -> int:
    return int(text.rstrip(")").rsplit(" ", 1)[1])


# --- kill -9 of the worker running the example's `regress` -----------------------------------------------

STEPS, EVERY = 6_000, 300  # a few seconds a run; 30% is 1,800 steps: six checkpoints behind the kill
REGRESS = ("regress", "--param", f"steps={STEPS}", "--param", f"checkpoint_every={EVERY}", "--seed", "11",
           "--device", "cpu")


def test_kill_9_resumes_regress_from_its_own_checkpoint_to_the_uninterrupted_history(fleet, cli, client,
                                                                                     registry) -> None:
    """Given two workers offering `regress`, kill -9 of the one running it at ~30%: the job resumes from the
    function's own checkpoint (its model, Adam's moments and the RNG its batches draw from) and ends with the
    history of the same job run uninterrupted, each step once."""
    reference = finished(cli, submit(cli, *REGRESS)["id"], 120)
    assert reference["state"] == "succeeded", reference

    job = submit(cli, *REGRESS)
    wait_until(lambda: len(client.job(job["id"]).losses()) >= 0.3 * STEPS, 60, "30% progress")
    kill_9_its_worker(client, registry, job["id"])
    final = finished(cli, job["id"], 120)

    assert final["state"] == "succeeded" and final["attempts"] == 2 and final["recoveries"] == 1, final
    resumed = final["summary"]["resumed_from"]
    assert resumed >= EVERY and resumed % EVERY == 0  # a checkpoint of the function's own, not step 0
    assert reference["summary"]["resumed_from"] is None
    losses = history(cli, job["id"])
    assert len(losses) == STEPS
    assert losses == history(cli, reference["id"])  # Adam's state lost in the resume would show from `resumed` on
    assert final["summary"]["final_loss"] == reference["summary"]["final_loss"]
    assert client.job(job["id"]).metric("loss").iterations == list(range(STEPS))  # each step once, in order
    summary = final["summary"]
    assert summary["function"] == "regress" and summary["metrics"]["loss"]["last"] == losses[-1]
    assert {"seconds", "device", "worker"} <= set(summary) and summary["worker"] == final["worker"]


# --- stopping ------------------------------------------------------------------------------------------------

def test_cancel_stops_a_reporting_function_within_a_second(fleet, cli, client, registry) -> None:
    """Given `tq-steps` running (its `ctx.total` shown by `workers`), cancel ends it `cancelled` within a second
    through ctx.Stop, keeping each step it reported."""
    job = submit(cli, "tq-steps", "--param", "steps=100000", "--param", "sleep=0.01")
    wait_until(lambda: len(client.job(job["id"]).losses()) > 0, 60, "reports")

    def shown_by_workers() -> bool:
        nodes = json.loads(cli("workers", "--json").stdout)
        return any(n.get("job") == job["id"] and str(n.get("iterations")) == "100000" and int(n.get("iteration") or 0)
                   > 0 for n in nodes)

    wait_until(shown_by_workers, 10, "step i/N in `tensorq workers`")
    asked_at = time.time()
    done = cli("cancel", job["id"])
    assert done.returncode == 0, done.stderr
    record = client.job(job["id"]).status()
    print(f"\ncancelled {record.finished_at - asked_at:.2f} s after the request")
    assert record.state == "cancelled" and record.error.startswith("cancelled at "), record.error
    assert record.finished_at - asked_at < 1.0
    stopped_at = last_number(record.error)
    assert len(history(cli, job["id"])) == stopped_at > 0


def test_a_function_that_raises_fails_with_its_message_in_one_line(fleet, cli) -> None:
    job = submit(cli, "tq-fail")
    final = finished(cli, job["id"])
    assert final["state"] == "failed", final
    assert "ValueError: boom: a bad batch at step 3" in final["error"] and "\n" not in final["error"], final["error"]
    assert history(cli, job["id"]) == [1.0, 0.5, 1 / 3]  # the steps it reported before raising are kept
    shown = cli("status", job["id"])
    assert "ValueError: boom: a bad batch at step 3" in shown.stdout


def test_a_function_that_never_reports_holds_a_lease_and_is_cancelled_when_it_returns(fleet, cli, redis_server,
                                                                                      client) -> None:
    """Given `tq-silent` in one 5-second sleep: it runs under a lease its worker renews; a cancel asked for
    meanwhile cannot reach into the sleep, so the job ends `cancelled` when the function returns."""
    seconds = 5.0
    job = submit(cli, "tq-silent", "--param", f"seconds={seconds}")
    wait_until(lambda: status(cli, job["id"])["state"] == "running", 60, "running")
    r, lease = redis_server.client(), Keys().lease(job["id"])
    assert r.exists(lease)
    asked = cli("cancel", job["id"], "--wait", "0")
    assert asked.returncode == 0 and "still running" in asked.stderr, (asked.stdout, asked.stderr)
    started_at = status(cli, job["id"])["started_at"]
    time.sleep(max(0.0, started_at + seconds - 1 - time.time()))
    assert status(cli, job["id"])["state"] == "running"
    # 4 s into the job, a 5 s lease unrenewed would have 1 s left; renewed every 0.67 s it never has under 3
    assert r.ttl(lease) >= int(FAST_LAPSE["TENSORQ_LEASE_TTL_S"]) - 2
    final = finished(cli, job["id"])
    assert final["state"] == "cancelled", final
    assert final["finished_at"] - final["started_at"] >= seconds  # when it returned, not before
    assert not r.exists(lease)


def test_a_timeout_fails_a_function_that_never_reports_when_it_returns(fleet, cli) -> None:
    done = cli("submit", "run", "tq-silent", "--param", "seconds=2", "--timeout", "1", "--queue", QUEUE, "--wait",
               "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    final = json.loads(done.stdout)
    assert final["state"] == "failed" and final["error"].startswith("timed out after 1 s"), final["error"]
    assert final["finished_at"] - final["started_at"] >= 2


# --- params --------------------------------------------------------------------------------------------------

BAD_PARAMS = {
    "below its minimum": (["tq-strict", "--param", "steps=0"], "steps"),
    "a required one missing": (["tq-strict"], "steps"),
    "not a number": (["regress", "--param", "steps=abc"], "steps"),
    "an unknown one": (["regress", "--param", "stpes=5"], "stpes"),
}


@pytest.mark.parametrize("case", BAD_PARAMS)
def test_bad_params_are_refused_before_enqueue_in_one_line(case: str, cli, redis_server, testfns_here) -> None:
    args, fragment = BAD_PARAMS[case]
    r = redis_server.client()
    before = r.zcard("tensorq:jobs")
    done = cli("submit", "run", *args, "--queue", QUEUE)
    assert_one_line_error(done, 2, fragment)
    assert r.zcard("tensorq:jobs") == before


def test_params_the_producer_cannot_check_are_refused_by_the_worker(fleet, client) -> None:
    """Where the function is not installed beside the producer, its params go as given; the worker's check
    fails the job in one line, before the function runs."""
    job = client.submit_run("tq-strict", params={"steps": 0}, queue=QUEUE)
    record = job.wait(timeout=60)
    assert record.state == "failed" and "steps" in record.error and "\n" not in record.error, record.error
    assert job.losses() == []


def test_defaults_of_a_params_model_are_filled_in(fleet, cli) -> None:
    final = finished(cli, submit(cli, "regress", "--param", "steps=20", "--seed", "1")["id"])
    assert final["state"] == "succeeded", final
    assert final["spec"]["params"] == {"steps": 20, "lr": 1e-2, "hidden": 32, "checkpoint_every": 100}
    assert final["spec"]["seed"] == 1 and len(history(cli, final["id"])) == 20


# --- routing -------------------------------------------------------------------------------------------------

def test_an_unknown_function_warns_and_waits(cli, redis_server, fleet) -> None:
    done = cli("submit", "run", "tq-nowhere", "--queue", QUEUE, "--json")
    assert done.returncode == 0, done.stderr
    assert "no live worker consumes queue" in done.stderr and "tq-nowhere" in done.stderr, done.stderr
    job = json.loads(done.stdout)
    time.sleep(1)  # long enough for a worker to have taken it, had one been given it
    assert status(cli, job["id"])["state"] == "queued"
    assert redis_server.client().llen(f"{QUEUE}.fn.tq-nowhere") == 1
    assert json.loads(cli("cancel", job["id"], "--json").stdout)[0]["state"] == "cancelled"


def test_only_the_worker_offering_a_function_runs_it(fleet, cli, client) -> None:
    """Given two workers on one queue, only one offering `tq-steps`: every tq-steps job runs there and none
    fails, while `regress` jobs beside them may go to either."""
    runs = [client.submit_run("tq-steps", params={"steps": 3, "sleep": 0.05}, queue=QUEUE) for _ in range(6)]
    beside = [client.submit_run("regress", params={"steps": 50}, queue=QUEUE) for _ in range(2)]
    records = client.wait_all(runs + beside, timeout=120)
    assert [r.state for r in records] == ["succeeded"] * len(records), [(r.state, r.error) for r in records]
    assert {r.worker for r in records[:len(runs)]} == {fleet.node(OFFERING)}
    assert all(r.summary["ran"] == 3 and r.summary["resumed_from"] is None for r in records[:len(runs)])
    assert all(r.queue == f"{QUEUE}.fn.tq-steps" for r in records[:len(runs)])


def test_functions_lists_what_live_workers_offer(fleet, cli) -> None:
    done = cli("functions", "--json")
    assert done.returncode == 0, done.stderr
    offered = {row["name"]: set(row["workers"]) for row in json.loads(done.stdout)}
    ours = {fleet.node(OFFERING), fleet.node(PLAIN)}
    assert ours <= offered["regress"] and ours <= offered["digits"]  # other modules' workers may offer them too
    for name in ("tq-fail", "tq-silent", "tq-steps", "tq-strict"):
        assert fleet.node(OFFERING) in offered[name] and fleet.node(PLAIN) not in offered[name]
    shown = cli("functions").stdout
    assert "regress" in shown and fleet.node(OFFERING) in shown


# --- sweeps and job files ------------------------------------------------------------------------------------

def test_a_sweep_over_params_is_ranked_by_loss(fleet, cli) -> None:
    done = cli("submit", "run", "regress", "--param", "steps=200", "--sweep", "lr=1e-3,1e-2", "--seeds", "2",
               "--seed", "3", "--queue", QUEUE, "--wait", "--json")
    assert done.returncode == 0, done.stderr
    group_id = json.loads(done.stdout)["group"]
    out = json.loads(cli("group", group_id, "--rank-by", "loss", "--json").stdout)
    jobs = {j["id"]: j for j in out["jobs"]}
    assert len(jobs) == 4 and all(j["state"] == "succeeded" and j["kind"] == "run" for j in jobs.values())
    assert sorted((j["spec"]["params"]["lr"], j["spec"]["seed"]) for j in jobs.values()) == sorted(
        itertools.product([1e-3, 1e-2], [3, 4]))
    last = {i: j["summary"]["metrics"]["loss"]["last"] for i, j in jobs.items()}
    assert out["rank_by"] == "loss" and [last[i] for i in out["ranking"]] == sorted(last.values())


def test_a_job_file_runs_functions_and_sweeps_their_params(fleet, cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(f"""\
- kind: run
  function: tq-steps
  params: {{steps: 2, sleep: 0}}
  queue: {QUEUE}
- kind: run
  function: regress
  params: {{steps: 10}}
  sweep: {{hidden: [4, 8]}}
  seed: 2
  queue: {QUEUE}
""")
    done = cli("submit", "-f", str(path), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    jobs = out["jobs"] if isinstance(out, dict) else out
    made = sorted((j["spec"]["function"], json.dumps(j["spec"]["params"], sort_keys=True)) for j in jobs)
    assert made == [("regress", json.dumps({"checkpoint_every": 100, "hidden": h, "lr": 0.01, "steps": 10},
                                           sort_keys=True)) for h in (4, 8)] + [
        ("tq-steps", json.dumps({"sleep": 0, "steps": 2}, sort_keys=True))]
    assert all(j["state"] == "succeeded" for j in jobs), jobs


def test_a_rerun_changes_a_param_and_runs_where_the_original_did(fleet, cli) -> None:
    original = finished(cli, submit(cli, "regress", "--param", "steps=30", "--seed", "2", "--priority", "high")["id"])
    assert original["state"] == "succeeded", original
    done = cli("rerun", original["id"], "--set", "lr=1e-3", "--json")
    assert done.returncode == 0 and "no live worker" not in done.stderr, (done.stdout, done.stderr)
    again = finished(cli, json.loads(done.stdout)["id"], 30)
    assert again["state"] == "succeeded" and again["rerun_of"] == original["id"], again
    assert again["queue"] == original["queue"] and again["spec"]["params"]["lr"] == 1e-3
    assert again["spec"]["seed"] == 2 and again["spec"]["params"]["steps"] == 30
