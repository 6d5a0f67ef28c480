"""The Python client as a notebook user meets it: the CLI's durations, one kind of tensor back from every
reader, documented callbacks, sweeps that default to training, errors importable from `producer`, a warning
for an unserved queue. A real Redis and a real CPU worker."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta

import numpy as np
import pytest
import torch

import producer

TINY = {"batch_size": 4, "input_size": 5, "hidden_size": 3, "output_size": 2, "iterations": 20, "device": "cpu"}


def test_jobs_since_takes_the_clis_durations(client, cpu_worker) -> None:
    job = client.submit_op("add", 1, 2, device="cpu")
    job.wait(timeout=60)
    for since in ("1h", "30m", datetime.now() - timedelta(hours=1), (datetime.now() - timedelta(days=1)).isoformat()):
        assert job.id in [r.id for r in client.jobs(since=since, limit=1000)], since
    assert job.id not in [r.id for r in client.jobs(since=datetime.now() + timedelta(hours=1))]
    with pytest.raises(producer.BadInput, match="expected a duration like 30m"):
        client.jobs(since="yesterday")


def test_every_reader_gives_torch_tensors(client, cpu_worker) -> None:
    """Given torch installed, Then result(), gather() and weights() all hand back torch tensors."""
    op = client.submit_op("matmul", [[1, 2], [3, 4]], "randn:2x2", seed=0)  # the README's example, as printed
    op.wait(timeout=60)
    assert isinstance(op.result(), torch.Tensor) and op.result().dtype == torch.float32
    batch = client.map_op("add", [(1, 2), (3, 4)], device="cpu")
    assert [t.tolist() for t in client.gather(batch, timeout=60)] == [3, 7]
    assert all(isinstance(t, torch.Tensor) for t in client.gather(batch, timeout=60))
    run = client.submit_train(**TINY)
    assert run.wait(timeout=60).state == "succeeded"
    weights = run.weights()
    assert set(weights) == {"w1", "w2"} and all(isinstance(w, torch.Tensor) for w in weights.values())
    assert tuple(weights["w1"].shape) == (5, 3)


def test_on_losses_is_called_with_the_first_iteration_and_the_losses(client, cpu_worker) -> None:
    seen: list[tuple[int, np.ndarray]] = []
    run = client.submit_train(**TINY)
    run.wait(timeout=60, on_losses=lambda first, losses: seen.append((first, losses)))
    assert seen and seen[0][0] == 0
    joined = np.concatenate([losses for _, losses in seen])
    assert joined.tolist() == run.losses() and len(joined) == TINY["iterations"]
    assert all(first == sum(len(v) for _, v in seen[:k]) for k, (first, _) in enumerate(seen))


def test_sweep_defaults_to_a_training_job_and_returns_its_group(client, cpu_worker) -> None:
    group_id, jobs = client.sweep({k: v for k, v in TINY.items()}, {"lr": [1e-6, 2e-6]}, 2)
    assert group_id.startswith("g") and len(jobs) == 4
    record, members = client.group(group_id)
    assert record.job_ids == [j.id for j in jobs] and {m.kind for m in members} == {"train"}
    assert [r.state for r in client.wait_all(jobs, timeout=120)] == ["succeeded"] * 4


def test_flag_spelling_works_as_a_keyword(client, cpu_worker) -> None:
    job = client.submit_train(**{"hidden-size": 3, "batch-size": 4, "input-size": 5, "output-size": 2,
                                 "iterations": 5, "device": "cpu"})
    assert job.status().spec["hidden_size"] == 3
    with pytest.raises(producer.BadInput, match="hiden-size: unknown field"):
        client.submit_train(**{"hiden-size": 3})


def test_a_job_found_by_a_unique_prefix(client, cpu_worker) -> None:
    job = client.submit_op("add", 1, 2, device="cpu")
    assert client.job(job.id[:6]).id == job.id
    with pytest.raises(producer.JobNotFound):
        client.job("zzzz-not-hex")
    for twin in ("fedc0000aaaa0000", "fedc0000bbbb0000"):  # two records whose ids share a prefix
        client.store.create(twin, "op", {}, "nowhere")
    with pytest.raises(producer.BadInput, match="ambiguous"):
        client.job("fedc0000")
    assert client.job("fedc0000b").id == "fedc0000bbbb0000"
    client.store.delete("fedc0000aaaa0000", "fedc0000bbbb0000")


def test_an_unserved_queue_warns(client, cpu_worker) -> None:
    """Given no GPU worker, When a job is sent with device="cuda", Then the client warns, as the CLI does."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job = client.submit_op("add", 1, 2, device="cuda")
    assert [str(w.message) for w in caught if w.category is producer.UnservedQueueWarning] == [
        "no live worker consumes queue 'gpu'; jobs wait there until one does"]
    job.cancel()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.submit_op("add", 1, 2, device="cpu").wait(timeout=60)
    assert not [w for w in caught if w.category is producer.UnservedQueueWarning]


def test_cuda_graph_with_no_gpu_worker_is_refused_before_enqueue(client, cpu_worker) -> None:
    before = len(client.jobs(limit=100_000))
    with pytest.raises(producer.BadInput, match="--cuda-graph needs a GPU worker"):
        client.submit_train(**{**TINY, "device": "auto"}, cuda_graph=True)
    assert len(client.jobs(limit=100_000)) == before


def test_asking_a_job_for_what_its_kind_does_not_make_says_so(client, cpu_worker) -> None:
    op = client.submit_op("add", 1, 2, device="cpu")
    op.wait(timeout=60)
    with pytest.raises(producer.BadInput, match="has no weights: it is of kind op, and only train jobs") as info:
        op.weights()
    assert not isinstance(info.value, producer.JobNotFound)
    long_run = client.submit_train(**{**TINY, "iterations": 200_000})
    with pytest.raises(TimeoutError, match=r"after 0\.01 s$"):
        long_run.wait(timeout=0.01)
    long_run.cancel()  # the session's worker serves other tests
