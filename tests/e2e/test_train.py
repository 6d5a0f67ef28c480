"""Training jobs end to end: the stored history, weights and summary against the note's loop run inline."""

from __future__ import annotations

import io
import json

import numpy as np
import torch
from safetensors.numpy import load

from tests.note_loop import note_loop


def test_history_weights_and_summary_equal_the_note_loop(cli, cpu_worker, client) -> None:
    """Given `submit train --iterations 500 --seed 0`, the history equals the inline loop value for value."""
    done = cli("submit", "train", "--iterations", "500", "--seed", "0", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    expected_losses, w1, w2 = note_loop(seed=0, iterations=500)

    # the history, every iteration, through the CLI's json and csv exports and the client
    as_json = json.loads(cli("history", status["id"], "--format", "json").stdout)
    assert as_json["loss"] == expected_losses
    csv = np.loadtxt(io.StringIO(cli("history", status["id"], "--format", "csv").stdout), delimiter=",",
                     skiprows=1)
    assert csv[:, 0].tolist() == list(range(500)) and csv[:, 1].tolist() == expected_losses
    job = client.job(status["id"])
    assert job.losses() == expected_losses

    # the weights artifact
    weights = load(job.artifact_bytes("weights"))
    assert np.array_equal(weights["w1"], w1.numpy()) and np.array_equal(weights["w2"], w2.numpy())

    # the summary
    summary = status["summary"]
    assert summary["final_loss"] == expected_losses[-1]
    assert summary["best_loss"] == min(expected_losses)
    assert summary["iterations"] == 500 and summary["iterations_per_s"] > 0 and summary["seconds"] > 0
    assert summary["device"] == "cpu" and summary["worker"] == status["worker"]
    assert summary["torch"] == torch.__version__
    assert status["device"] == "cpu" and status["error"] is None


def test_wait_prints_progress_and_the_summary(cli, cpu_worker) -> None:
    done = cli("submit", "train", "--iterations", "300", "--hidden-size", "20", "--wait")
    assert done.returncode == 0, done.stderr
    assert "iteration 300/300" in done.stdout
    assert "succeeded" in done.stdout and "final loss" in done.stdout


def test_every_option_pair_runs_through_a_worker(client, cpu_worker) -> None:
    """Given each activation/loss pair with manual gradients in float64, the job succeeds with a full history."""
    jobs = [client.submit_train(batch_size=16, input_size=32, hidden_size=8, output_size=4, iterations=25,
                                activation=act, loss=loss, grad="manual", dtype="float64", lr=1e-3, device="cpu")
            for act in ("relu", "sigmoid") for loss in ("sse", "ce")]
    for job in jobs:
        assert job.wait(timeout=60).state == "succeeded"
        assert len(job.losses()) == 25


def send_raw(client, task: str, spec: object) -> str:
    """A job record plus a task message that skipped the producer's checks, as a buggy or old client would."""
    from producer.client import new_job_id

    job_id = new_job_id()
    client.store.create(job_id, "train", spec if isinstance(spec, dict) else {}, "cpu")
    client.celery.send_task(task, kwargs={"spec": spec}, task_id=job_id, queue="cpu")
    return job_id


def test_a_job_that_fails_on_the_worker_ends_failed_and_wait_exits_1(cli, cpu_worker, client) -> None:
    """Given a spec the worker's own checks reject, the job ends `failed` with the reason; `wait` exits 1."""
    job_id = send_raw(client, "tensorq.train", {"kind": "train", "hidden_size": 0})
    waited = cli("wait", job_id, "--timeout", "60")
    assert waited.returncode == 1
    assert "hidden-size" in waited.stderr and "Traceback" not in waited.stderr
    status = json.loads(cli("status", job_id, "--json").stdout)
    assert status["state"] == "failed" and status["error"].startswith("hidden-size:")
    assert cli("result", job_id).returncode == 1


def test_a_spec_sent_to_the_wrong_task_fails_cleanly(cli, cpu_worker, client) -> None:
    job_id = send_raw(client, "tensorq.tensor_op", {"kind": "train", "iterations": 3})
    assert cli("wait", job_id, "--timeout", "60").returncode == 1
    status = json.loads(cli("status", job_id, "--json").stdout)
    assert "op task" in status["error"]
    # and the worker is still serving
    assert cli("submit", "train", "--iterations", "2", "--wait").returncode == 0


def test_status_json_contract(cli, cpu_worker) -> None:
    sub = cli("submit", "train", "--iterations", "10", "--json")
    job_id = json.loads(sub.stdout)["id"]
    done = cli("submit", "train", "--iterations", "1", "--wait", "--json")  # FIFO: ours ran before this one
    assert done.returncode == 0
    status = json.loads(cli("status", job_id, "--json").stdout)
    for key in ("id", "state", "worker", "device", "error", "summary"):
        assert key in status
    assert status["id"] == job_id and status["state"] == "succeeded"
