"""A job's metric series from the client (`Job.metrics()`, `Job.metric(name)`), and the validation a submit
path gives a priority no worker reads. A real Redis and a real CPU worker."""

from __future__ import annotations

import pytest

import producer

TINY = {"batch_size": 4, "input_size": 5, "hidden_size": 3, "output_size": 2, "iterations": 25, "device": "cpu"}


def test_a_training_jobs_metrics_are_its_named_series(client, cpu_worker) -> None:
    job = client.submit_train(**TINY)
    record = job.wait(timeout=60)
    assert record.state == "succeeded" and record.metrics == ["loss"]
    metrics = job.metrics()
    assert list(metrics) == ["loss"]
    assert metrics["loss"].iterations == list(range(25)) and metrics["loss"].values == job.losses()
    assert job.metric("loss") == metrics["loss"]
    assert record.to_status()["metrics"] == ["loss"]


def test_a_metric_the_job_does_not_have_is_one_line_naming_those_it_has(client, cpu_worker) -> None:
    job = client.submit_train(**TINY)
    job.wait(timeout=60)
    with pytest.raises(producer.BadInput, match=r"has no metric 'val_accuracy' \(it has: loss\)"):
        job.metric("val_accuracy")
    op = client.submit_op("add", 1, 2, device="cpu")
    op.wait(timeout=60)
    assert op.metrics() == {}


@pytest.mark.parametrize("submit", [
    lambda c: c.map_op("add", [(1, 2)], device="cpu", priority="urgent"),
    lambda c: c.submit_op("add", 1, 2, device="cpu", priority="urgent"),
    lambda c: c.submit_train(priority="urgent", **TINY),
    lambda c: c.sweep({"iterations": 2}, {"lr": [1e-6]}, priority="urgent"),
])
def test_every_submit_path_refuses_a_priority_no_worker_reads(client, submit) -> None:
    before = len(client.jobs(limit=100_000))
    with pytest.raises(producer.BadInput, match="priority"):
        submit(client)
    assert len(client.jobs(limit=100_000)) == before  # nothing enqueued


def test_an_op_jobs_losses_are_none_as_before(client, cpu_worker) -> None:
    op = client.submit_op("add", 1, 2, device="cpu")
    op.wait(timeout=60)
    assert op.losses() == []
