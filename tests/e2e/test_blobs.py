"""Blobs of any size through Redis (shared/blobs.py, shared/chunked.py, shared/objects.py) against a real Redis and
real workers: a checkpoint, weights or dataset too large for one value goes in chunks that every host reaches; the
checkpoint swap is fenced by the lease; chunks expire and go with their job; an object store by URL (file://)
takes the largest; and a 64 MiB-weight job killed with kill -9 resumes on a host that shares nothing but Redis.

The store-level tests shrink the sizes (a 64 KiB value, 16 KiB chunks) so that many chunks cost milliseconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load

from shared import chunked, datasets, defaults
from shared.errors import TensorqError
from shared.keys import Keys
from shared.store import JobStore
from shared.vocab import JobState
from tests.note_loop import note_loop
from tests.support.cli import Cli
from tests.support.processes import (
    FAST_LAPSE,
    kill_9_its_worker,
    start_launcher,
    start_redis,
    stop_process,
    tq_env,
    wait_until,
)
from worker import tensor_blobs

SMALL_VALUE, SMALL_CHUNK = 64 * 1024, 16 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    stop_process(server.proc)


@pytest.fixture
def small(monkeypatch):
    """Blobs over 64 KiB in chunks of 16 KiB, three to a write pipeline and two to a read one."""
    monkeypatch.setattr(defaults, "ARTIFACT_INLINE_MAX_BYTES", SMALL_VALUE)
    monkeypatch.setattr(defaults, "BLOB_CHUNK_BYTES", SMALL_CHUNK)
    monkeypatch.setattr(defaults, "BLOB_WRITE_DEPTH", 3)
    monkeypatch.setattr(defaults, "BLOB_READ_DEPTH", 2)


def weights(seed: int, rows: int = 100) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w1": torch.randn(rows, 300, generator=g), "w2": torch.randn(300, 10, generator=g)}  # ~130 KiB at 100


def chunks_of(r, key: str) -> list[str]:
    return sorted(k.decode() for k in r.scan_iter(match=f"{key}:*"))


def store_for(server, tmp_path: Path, **kw) -> JobStore:
    return JobStore(server.client(), Keys(f"{tmp_path.name}:"), tmp_path / "artifacts", **kw)  # a prefix of its own


def running_job(store: JobStore, job_id: str, holder: str = "h", kind: str = "train") -> None:
    store.create(job_id, kind, {"kind": kind}, "cpu")
    assert store.begin(job_id, holder, "w", "cpu") == "ok"


def test_a_large_checkpoint_goes_in_chunks_and_is_swapped_whole(server, tmp_path, small) -> None:
    """
    Given a running job's lease
    When checkpoints larger than one value are written, one after another, then a small one
    Then the key holds a manifest, its chunks are permanent, each read gives the latest checkpoint exactly, and
    each swap leaves no chunk of the previous generation behind.
    """
    store, r = store_for(server, tmp_path), server.client()
    job_id = "b100000000000001"
    running_job(store, job_id)
    key = store.keys.checkpoint(job_id)
    for seed in (1, 2):
        tensors = weights(seed)
        assert store.blobs.put_checkpoint(job_id, tensor_blobs.blob(tensors, {"state": str(seed)}), "h")
        manifest = chunked.Manifest.decode(r.get(key))
        assert manifest is not None and manifest.count > 5
        assert chunks_of(r, key) == sorted(manifest.keys(store.keys, key))  # this generation's, and only those
        assert all(r.ttl(k) == -1 for k in chunks_of(r, key))
        read = store.blobs.get_checkpoint(job_id)
        assert isinstance(read, bytearray)
        back, meta = tensor_blobs.load(read)
        assert meta == {"state": str(seed)} and all(torch.equal(back[n], t) for n, t in tensors.items())
        assert load(bytes(read)).keys() == tensors.keys()  # the safetensors library reads the same bytes
    assert store.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(3, rows=2)), "h")
    assert chunks_of(r, key) == [] and chunked.Manifest.decode(r.get(key)) is None


def test_a_fenced_out_writer_never_replaces_the_checkpoint(server, tmp_path, small) -> None:
    """
    Given a job whose lease another worker holds now, with its checkpoint
    When the old worker writes a checkpoint (complete, or cut short by a crash)
    Then the checkpoint stays the lease holder's; the complete one's chunks are gone at once, and the cut-short
    one's carry the provisional TTL, so they expire.
    """
    store, r = store_for(server, tmp_path), server.client()
    job_id = "b100000000000002"
    running_job(store, job_id, holder="new")
    key = store.keys.checkpoint(job_id)
    assert store.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(1)), "new")
    ours = r.get(key)
    before = chunks_of(r, key)

    assert store.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(2)), "old") is False
    assert r.get(key) == ours and chunks_of(r, key) == before

    _, names = chunked.write(r, store.keys, key, tensor_blobs.blob(weights(3)))  # then the process dies
    assert r.get(key) == ours
    assert all(0 < r.ttl(n) <= defaults.BLOB_PENDING_TTL_S for n in names)
    assert torch.equal(tensor_blobs.load(store.blobs.get_checkpoint(job_id))[0]["w1"], weights(1)["w1"])


def test_a_reader_starts_again_when_a_new_checkpoint_replaces_the_one_it_reads(server, tmp_path, small) -> None:
    """A reader holding the manifest of a generation swapped out (its chunks dropped) reads the new one whole."""
    store, r = store_for(server, tmp_path), server.client()
    job_id = "b100000000000003"
    running_job(store, job_id)
    key = store.keys.checkpoint(job_id)
    assert store.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(1)), "h")
    stale = r.get(key)
    assert store.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(2)), "h")
    read = store.blobs._resolved(key, stale)  # as if the swap came between its GET of the manifest and the chunks
    assert torch.equal(tensor_blobs.load(read)[0]["w1"], weights(2)["w1"])


def test_chunks_expire_and_go_with_their_job(server, tmp_path, small) -> None:
    """
    Given jobs that end with weights (and an op result) too large for one value, some with a retention TTL
    When they end, and later are pruned
    Then their chunks carry the job's TTL (or none, kept), the checkpoint's chunks go at the ending, and prune
    leaves no key of the job behind.
    """
    r = server.client()
    kept, expiring, op = "b100000000000004", "b100000000000005", "b100000000000006"
    store = store_for(server, tmp_path, retention={"train": None, "op": 3600, "run": None})
    short = store_for(server, tmp_path, retention={"train": 600, "op": 3600, "run": None})
    for s, job_id in ((store, kept), (short, expiring)):
        running_job(s, job_id)
        assert s.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(1)), "h")
        assert s.mark_finished(job_id, JobState.SUCCEEDED, summary={}, lease_holder="h",
                               artifacts={"weights": tensor_blobs.blob(weights(2))})
        assert r.exists(s.keys.checkpoint(job_id)) == 0 and chunks_of(r, s.keys.checkpoint(job_id)) == []
        assert s.require(job_id).artifacts == ["weights"]
        back = tensor_blobs.load(s.blobs.get_artifact(job_id, "weights"))[0]
        assert torch.equal(back["w2"], weights(2)["w2"])
    key = store.keys.artifact(kept, "weights")
    assert chunks_of(r, key) and all(r.ttl(k) == -1 for k in chunks_of(r, key))
    key = store.keys.artifact(expiring, "weights")
    assert chunks_of(r, key) and all(590 <= r.ttl(k) <= 600 for k in [key, *chunks_of(r, key)])

    store.create(op, "op", {"kind": "op"}, "cpu")
    result = tensor_blobs.blob({"result": torch.arange(40_000, dtype=torch.float64)}).joined()
    assert store.finish_op(op, "w", "cpu", time.time(), {}, result) == "ok"
    key = store.keys.artifact(op, "result")
    assert chunks_of(r, key) and all(3590 <= r.ttl(k) <= 3600 for k in [key, *chunks_of(r, key)])
    assert bytes(store.blobs.get_artifact(op, "result")) == result

    assert store.prune(time.time() + 1, ["train", "op"], ["succeeded"]) == {"train": 2, "op": 1}  # all ended by now
    for job_id in (kept, expiring, op):
        assert list(r.scan_iter(match=f"{store.keys.job(job_id)}*")) == []


def test_the_shapes_of_large_weights_are_read_from_their_first_chunk(server, tmp_path, small) -> None:
    """
    Given a job that ended with weights in chunks
    When every chunk but the first is deleted
    Then `Job.artifact_shapes` (what `tensorq result JOB` prints) still gives each tensor's shape, read from the
    header alone, while reading the weights themselves says a chunk is missing.
    """
    from types import SimpleNamespace

    from producer.job import Job

    store, r, job_id = store_for(server, tmp_path), server.client(), "b100000000000010"
    running_job(store, job_id)
    assert store.mark_finished(job_id, JobState.SUCCEEDED, summary={}, lease_holder="h",
                               artifacts={"weights": tensor_blobs.blob(weights(3))})
    key = store.keys.artifact(job_id, "weights")
    manifest = chunked.Manifest.decode(r.get(key))
    assert manifest is not None and manifest.count > 5
    r.delete(*manifest.keys(store.keys, key)[1:])
    job = Job(SimpleNamespace(store=store), job_id)  # type: ignore[arg-type]
    assert job.artifact_shapes("weights") == {"w1": [100, 300], "w2": [300, 10]}
    with pytest.raises(TensorqError, match="a chunk of it is missing"):
        job.artifact_bytes("weights")


def test_a_large_dataset_is_sent_once_in_chunks(server, tmp_path, small) -> None:
    """
    Given a dataset larger than one value
    When it is put twice, read back, and pruned once no job names it
    Then the first put sends it in chunks and the second sends nothing; the rows read back match their hash; prune
    deletes its chunks with it.
    """
    store, r = store_for(server, tmp_path), server.client()
    x = np.random.default_rng(0).standard_normal((400, 50)).astype(np.float32)
    d = datasets.checked(x, np.arange(400) % 3, "big")
    assert d.streamed.size > SMALL_VALUE
    key = store.keys.dataset(d.sha256)
    assert store.blobs.put_dataset(d.sha256, d.streamed)
    names = chunks_of(r, key)
    assert len(names) == -(-d.streamed.size // SMALL_CHUNK) and all(r.ttl(n) == -1 for n in names)
    assert store.blobs.put_dataset(d.sha256, d.streamed) is False and chunks_of(r, key) == names
    rows, ids = datasets.from_blob(store.blobs.get_dataset(d.sha256), d.sha256)
    assert np.array_equal(rows, x) and np.array_equal(ids, np.arange(400) % 3)
    assert store.prune_datasets() == 1
    assert not r.exists(key) and chunks_of(r, key) == []


def test_blobs_over_the_threshold_go_to_the_object_store(server, tmp_path, small) -> None:
    """
    Given TENSORQ_ARTIFACTS=file://... with a 100 KiB threshold
    When checkpoints and weights of a job are written, read by a store that has no such setting, and pruned
    Then the large ones are objects under the URL (Redis holds `url:`), a swap deletes the object it replaced, a
    fenced-out writer's object is deleted, and prune deletes the rest.
    """
    base = tmp_path / "shared"
    writer = store_for(server, tmp_path, store_url=f"file://{base}", store_min_bytes=100 * 1024)
    reader, r = JobStore(server.client(), writer.keys, tmp_path / "laptop"), server.client()  # no TENSORQ_ARTIFACTS
    job_id = "b100000000000007"
    running_job(writer, job_id)
    key = writer.keys.checkpoint(job_id)

    def objects() -> list[Path]:
        return sorted(p for p in base.rglob("*") if p.is_file())

    assert writer.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(1)), "h")
    first = objects()
    assert len(first) == 1 and r.get(key) == b"url:file://" + str(first[0]).encode()
    assert writer.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(2)), "h")
    assert len(objects()) == 1 and objects() != first
    assert writer.blobs.put_checkpoint(job_id, tensor_blobs.blob(weights(3)), "someone else") is False
    assert len(objects()) == 1
    assert torch.equal(tensor_blobs.load(reader.blobs.get_checkpoint(job_id))[0]["w1"], weights(2)["w1"])

    assert writer.mark_finished(job_id, JobState.SUCCEEDED, summary={}, lease_holder="h",
                                artifacts={"weights": tensor_blobs.blob(weights(4))})
    [only] = objects()
    assert "artifact" in str(only) and r.hget(writer.keys.job(job_id), "artifact:weights").startswith(b"url:")
    out = tmp_path / "w.safetensors"
    assert reader.blobs.copy_artifact(job_id, "weights", out.open("wb").write)
    assert torch.equal(load(out.read_bytes())["w2"], weights(4)["w2"])
    assert reader.prune(time.time() + 1, ["train"], ["succeeded"]) == {"train": 1}
    assert objects() == []


def test_a_blob_an_older_tensorq_left_in_a_file_still_reads(server, tmp_path) -> None:
    store, r = store_for(server, tmp_path), server.client()
    path = tmp_path / "old.safetensors"
    path.write_bytes(tensor_blobs.blob(weights(1)).joined())
    r.set(store.keys.artifact("b100000000000008", "weights"), f"file:{path}")
    assert bytes(store.blobs.get_artifact("b100000000000008", "weights")) == path.read_bytes()


# --- two hosts that share nothing but Redis ------------------------------------------------------------------

# 64 MiB of w1 (4096 x 4096 float32): twice the largest single value. A batch of 4 rows keeps an iteration near
# 0.1 s on a busy 2-core CPU (the update of w1 dominates); lr 1e-8 keeps its losses finite.
BIG = {"batch_size": 4, "input_size": 4096, "hidden_size": 4096, "output_size": 10}
ITERATIONS, EVERY, SEED, LR = 60, 6, 5, 1e-8


def test_a_64_mib_job_killed_midway_resumes_on_another_host_and_a_laptop_reads_its_weights(server, tmp_path
                                                                                           ) -> None:
    """
    Given two worker launchers with different TENSORQ_HOMEs, sharing only Redis, and a job with 64 MiB of weights
    When the one running it is killed with kill -9 at ~30%, its launcher with it (its lease then lapses)
    Then the other host resumes it from its chunked checkpoint and it ends with the history of an uninterrupted
    run; a third home (a laptop) writes its weights to a file, equal to the run's; no checkpoint chunk is left.
    """
    from producer.client import Client
    from shared.registry import NodeRegistry

    r, keys = server.client(), Keys()
    registry, client = NodeRegistry(r, keys), Client(server.url)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in BIG.items()]
    hosts = {name: start_launcher(server.url, tmp_path / name, tmp_path / f"{name}.log", "--gpus", "none", "--name",
                                  name, "--queue", "big", **FAST_LAPSE)
             for name in ("host-a", "host-b")}  # side by side
    laptop = Cli(tq_env(server.url, tmp_path / "laptop"))
    try:
        wait_until(lambda: all(len(w.nodes(registry)) == 1 for w in hosts.values()), 90, "both workers")
        job = json.loads(laptop("submit", "train", *flags, "--iterations", str(ITERATIONS), "--seed", str(SEED),
                                "--lr", str(LR), "--checkpoint-every", str(EVERY), "--queue", "big",
                                "--json").stdout)["id"]
        ckpt = keys.checkpoint(job)

        def checkpointed_past_30_percent() -> bool:
            return chunked.Manifest.decode(r.get(ckpt)) is not None and \
                len(client.job(job).losses()) >= 0.3 * ITERATIONS

        wait_until(checkpointed_past_30_percent, 90, "a chunked checkpoint past 30%")
        victim = kill_9_its_worker(client, registry, job)
        [(name, launcher)] = [(n, w) for n, w in hosts.items() if victim.startswith(n)]
        launcher.proc.kill()  # its launcher too, or it would restart the worker on the same host
        r.delete(keys.lease(job))  # what the lease's TTL does 15 s later: the other host's reaper puts the job back
        done = laptop("wait", job, "--timeout", "120", "--json")
        assert done.returncode == 0, done.stderr
    finally:
        for w in hosts.values():
            stop_process(w.proc, 40)
    final = json.loads(done.stdout)[0]
    assert not final["worker"].startswith(name) and final["attempts"] == 2 and final["recoveries"] == 1
    assert final["summary"]["resumed_from"] >= EVERY
    losses, w1, w2 = note_loop(SEED, BIG["batch_size"], BIG["input_size"], BIG["hidden_size"],
                               BIG["output_size"], learning_rate=LR, iterations=ITERATIONS)
    assert json.loads(laptop("history", job, "--format", "json").stdout)["loss"] == losses
    out = tmp_path / "w.safetensors"
    wrote = laptop("result", job, "-o", str(out))
    assert wrote.returncode == 0, wrote.stderr
    got = load(out.read_bytes())
    assert torch.equal(got["w1"], w1) and torch.equal(got["w2"], w2)
    # the checkpoint went with the ending; all a writer killed midway may leave is chunks that expire
    assert not r.exists(ckpt) and all(0 < r.ttl(k) <= defaults.BLOB_PENDING_TTL_S for k in chunks_of(r, ckpt))
    weights = chunks_of(r, keys.artifact(job, "weights"))
    assert len(weights) == 17 and all(r.ttl(k) == -1 for k in weights)  # 64 MiB and a bit, in 4 MiB chunks
