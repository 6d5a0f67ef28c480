"""Runs that diverge, and runs stopped early, against a real worker: a non-finite loss fails the job at that
iteration (unless --allow-nonfinite), every command that looks at runs reads inf/nan histories, and a
cancelled, timed-out or diverged job keeps the weights of its last iteration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.note_loop import note_loop
from tests.support.processes import wait_until
from tests.support.training import LONG

ITERATIONS = 60


def run_json(cli, *args: str, rc: int = 0) -> dict | list:
    done = cli(*args, "--json")
    assert done.returncode == rc, (args, done.returncode, done.stderr)
    return json.loads(done.stdout)


def history_json(cli, job_id: str) -> dict:
    done = cli("history", job_id, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def first_nonfinite(losses: list[float]) -> int:
    return next(k for k, v in enumerate(losses) if not math.isfinite(v))


def as_json_losses(losses: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in losses]


def same_weights(path: Path, w1: torch.Tensor, w2: torch.Tensor) -> None:
    got = load_file(path)
    assert set(got) == {"w1", "w2"}
    torch.testing.assert_close(got["w1"], w1, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got["w2"], w2, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("lr", ["1e-5", "1"])
def test_a_diverging_job_fails_at_its_first_nonfinite_loss(cli, cpu_worker, tmp_path, lr: str) -> None:
    """Given the note's network at a learning rate that diverges (1e-5 reaches inf, 1 reaches nan), the job
    ends `failed` with "diverged: loss became inf|nan at iteration N", its history is the note's loop's up to
    and including N, its best loss is the finite minimum, `wait` exits 1, and its weights (the diverged ones,
    after iteration N) can be written with `result -o`."""
    reference, _, _ = note_loop(seed=0, learning_rate=float(lr), iterations=ITERATIONS)
    n = first_nonfinite(reference)
    status = run_json(cli, "submit", "train", "--lr", lr, "--iterations", str(ITERATIONS), "--device", "cpu",
                      "--wait", rc=1)
    assert status["state"] == "failed"
    assert status["error"] == f"diverged: loss became {reference[n]} at iteration {n}"
    assert history_json(cli, status["id"])["loss"] == as_json_losses(reference[: n + 1])
    finite = [v for v in reference[: n + 1] if math.isfinite(v)]
    summary = status["summary"]
    assert summary["best_loss"] == min(finite) and summary["best_iteration"] == reference.index(min(finite))
    assert summary["iterations"] == n + 1 and summary["weights_at"] == n + 1

    waited = cli("wait", status["id"])
    assert waited.returncode == 1
    assert waited.stderr.strip() == f"error: job {status['id']} failed: {status['error']}"

    out = tmp_path / "w.safetensors"
    written = cli("result", status["id"], "-o", str(out))
    assert written.returncode == 0, written.stderr
    assert f"(failed: as of iteration {n + 1})" in written.stderr
    _, w1, w2 = note_loop(seed=0, learning_rate=float(lr), iterations=n + 1)
    same_weights(out, w1, w2)


def test_allow_nonfinite_runs_on_as_the_note_does(cli, client, cpu_worker, tmp_path) -> None:
    """Given --allow-nonfinite (CLI, client and job file alike), the job runs every iteration and succeeds;
    its history holds the inf and nan values, equal to the note's loop's."""
    reference, _, _ = note_loop(seed=0, learning_rate=1e-5, iterations=ITERATIONS)
    status = run_json(cli, "submit", "train", "--lr", "1e-5", "--iterations", str(ITERATIONS), "--device", "cpu",
                      "--allow-nonfinite", "--wait")
    assert status["state"] == "succeeded" and status["spec"]["allow_nonfinite"] is True
    assert history_json(cli, status["id"])["loss"] == as_json_losses(reference)
    assert status["summary"]["best_loss"] == min(v for v in reference if math.isfinite(v))

    job = client.submit_train(lr=1e-5, iterations=ITERATIONS, device="cpu", allow_nonfinite=True)
    assert job.wait(timeout=60).state == "succeeded" and len(job.losses()) == ITERATIONS
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"kind": "train", "lr": 1e-5, "iterations": ITERATIONS, "device": "cpu",
                                 "allow-nonfinite": True}]))
    group = run_json(cli, "submit", "-f", str(jobs), "--wait")
    assert client.job(group["ids"][0]).status().state == "succeeded"


@pytest.fixture(scope="module")
def diverged_runs(cli, cpu_worker) -> dict:
    """The README's tour sweep (lr=1e-6,1e-5: the second diverges) at 200 iterations, plus a run that went on
    through inf and nan (--allow-nonfinite): histories holding inf and nan."""
    group = run_json(cli, "submit", "train", "--sweep", "lr=1e-6,1e-5", "--iterations", "200", "--device", "cpu",
                     "--wait", rc=1)
    on = run_json(cli, "submit", "train", "--lr", "1e-5", "--iterations", "200", "--device", "cpu",
                  "--allow-nonfinite", "--wait")
    ids = group["ids"]
    states = [run_json(cli, "status", j)["state"] for j in ids]
    assert states == ["succeeded", "failed"], states
    return {"group": group["group"], "fine": ids[0], "diverged": ids[1], "nan": on["id"]}


def no_internal_error(done, *args: str) -> None:
    assert done.returncode == 0, (args, done.returncode, done.stderr)
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [
    ["compare", "{fine}", "{diverged}", "{nan}"],
    ["compare", "--group", "{group}", "--png", "{tmp}/c.png"],
    ["compare", "--group", "{group}", "--json"],
    ["history", "{nan}", "--plot"],
    ["history", "{diverged}", "--plot"],
    ["history", "{nan}", "--png", "{tmp}/h.png"],
    ["history", "{nan}"],
    ["group", "{group}"],
    ["group", "{group}", "--json"],
    ["status", "{diverged}"],
    ["status", "{nan}", "--json"],
    ["list", "--limit", "50"],
    ["list", "--json"],
])
def test_every_command_for_looking_at_runs_reads_nonfinite_histories(cli, diverged_runs, tmp_path, command) -> None:
    """Given a diverged run (its history ends at inf) and one that ran on through nan, each command that shows
    runs exits 0 with its output, never an internal error."""
    args = [a.format(**diverged_runs, tmp=tmp_path) for a in command]
    done = cli(*args)
    no_internal_error(done, *args)
    if "--png" in args:
        assert Path(args[args.index("--png") + 1]).read_bytes()[:4] == b"\x89PNG"
    if "--plot" in args or args[0] == "compare" and "--json" not in args:
        assert "┤" in done.stdout and "inf/nan losses not drawn" in done.stdout
    if "--json" in args:
        json.loads(done.stdout)  # strict JSON: the non-finite losses are null
    if args[0] == "status" and "--json" not in args:
        assert "None" not in done.stdout and "diverged: loss became inf at iteration" in done.stdout


def test_group_ranks_the_diverged_run_after_the_one_that_succeeded(cli, diverged_runs) -> None:
    group = run_json(cli, "group", diverged_runs["group"])
    assert group["ranking"] == [diverged_runs["fine"], diverged_runs["diverged"]]
    shown = cli("group", diverged_runs["group"])
    assert "None" not in shown.stdout and "1 failed, 1 succeeded" in shown.stdout


def test_watch_on_diverged_runs_shows_how_they_ended(cli, diverged_runs) -> None:
    done = cli("watch", diverged_runs["diverged"], diverged_runs["nan"])
    assert done.returncode == 1, done.stderr
    assert f"error: job {diverged_runs['diverged']} failed: diverged: loss became inf at iteration" in done.stderr
    assert "internal error" not in done.stderr


def test_a_cancelled_job_keeps_the_weights_of_its_last_iteration(cli, client, cpu_worker, tmp_path) -> None:
    """Given a running job cancelled at iteration N, `result -o` writes its weights after N iterations, equal to
    the note's loop run for N iterations; its summary says so (weights_at)."""
    job = run_json(cli, "submit", "train", *LONG, "--seed", "4")
    wait_until(lambda: len(client.job(job["id"]).losses()) > 0, 60, "losses")
    assert cli("cancel", job["id"]).returncode == 0
    record = run_json(cli, "status", job["id"])
    at = int(record["error"].rsplit(" ", 1)[1])
    assert record["state"] == "cancelled" and record["summary"]["weights_at"] == at
    assert record["summary"]["iterations"] == at == len(client.job(job["id"]).losses())
    out = tmp_path / "w.safetensors"
    written = cli("result", job["id"], "-o", str(out))
    assert written.returncode == 0, written.stderr
    assert f"(cancelled: as of iteration {at})" in written.stderr
    _, w1, w2 = note_loop(seed=4, N=8, D_in=16, H=8, D_out=4, iterations=at)
    same_weights(out, w1, w2)
    shown = cli("result", job["id"])
    assert shown.returncode == 0 and f"weights w1 16x8, w2 8x4 (cancelled: as of iteration {at})" in shown.stdout
    assert run_json(cli, "result", job["id"])["weights"] == {"w1": [16, 8], "w2": [8, 4]}


def test_a_timed_out_job_keeps_its_weights_too(cli, cpu_worker, tmp_path) -> None:
    record = run_json(cli, "submit", "train", *LONG, "--timeout", "1", "--wait", rc=1)
    at = int(record["error"].rstrip(")").rsplit(" ", 1)[1])
    assert record["summary"]["weights_at"] == at
    out = tmp_path / "w.safetensors"
    assert cli("result", record["id"], "-o", str(out)).returncode == 0
    _, w1, w2 = note_loop(seed=0, N=8, D_in=16, H=8, D_out=4, iterations=at)
    same_weights(out, w1, w2)


def test_a_job_cancelled_before_it_started_has_no_weights_and_says_so(cli) -> None:
    job = run_json(cli, "submit", "train", "--iterations", "5", "--queue", "nobody-runs-this")
    assert cli("cancel", job["id"]).returncode == 0
    done = cli("result", job["id"])
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: job {job['id']} is cancelled; it has no weights "
                                   "(cancelled before it started)")
