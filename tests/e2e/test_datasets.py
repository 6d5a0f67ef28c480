"""Training on real data end to end: the digits classifier's held-out accuracy, a user's file learned with its
sizes inferred, a dataset stored once for a sweep, every bad-data case refused before anything is enqueued,
and a resume after kill -9 equal to the inline reference loop."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from shared import datasets
from shared.vocab import READY_NODE_STATES
from tests.note_loop import note_loop_data
from tests.support.cli import assert_one_line_error
from tests.support.processes import FAST_LAPSE, REPO, kill_9_its_worker, start_launcher, stop_process, wait_until


def readme_digits_command() -> list[str]:
    """The README's headline digits command as printed (its continuation line joined), less `tensorq submit
    train`, `--grad` and `--watch`: the test runs it with each grad and reads --json instead."""
    text = (REPO / "README.md").read_text()
    start = text.index("    tensorq submit train --dataset digits --loss ce --activation sigmoid --grad manual")
    line = text[start:text.index("--watch", start) + len("--watch")].replace("\\\n", " ")
    words = shlex.split(line)[3:]
    assert words[-1] == "--watch" and words[words.index("--grad") + 1] == "manual"
    grad = words.index("--grad")
    return words[:grad] + words[grad + 2:-1]


DIGITS = readme_digits_command()


def submitted(cli, *args: str) -> dict:
    done = cli("submit", "train", *args, "--device", "cpu", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["state"] == "succeeded", status
    return status


def history(cli, job_id: str, metric: str = "loss") -> dict:
    done = cli("history", job_id, "--metric", metric, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def digits_reference(**changes):
    d = datasets.named("digits")
    options = {"seed": 0, "hidden": 64, "learning_rate": 1e-2, "iterations": 2000, "classes": 10,
               "val_fraction": 0.25, "standardize": True, "eval_every": 100, **changes}
    return note_loop_data(d.x, d.y, **options)


def test_digits_reach_095_held_out_accuracy_and_manual_equals_autograd(cli, cpu_worker) -> None:
    """Given the README's headline digits command with --grad manual, val_accuracy >= 0.95 for seed 0, recorded
    every 100 iterations and at the end; the same job with autograd has the same history to 1e-5 and equals the
    inline reference loop value for value."""
    manual = submitted(cli, *DIGITS, "--grad", "manual")
    autograd = submitted(cli, *DIGITS, "--grad", "autograd")
    losses, metrics, _, _ = digits_reference()

    summary = manual["summary"]["metrics"]
    assert summary["val_accuracy"]["last"] >= 0.95, summary
    assert set(summary) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    val = history(cli, manual["id"], "val_accuracy")
    assert val["iterations"] == list(range(0, 2001, 100))
    assert summary["val_accuracy"]["last"] == val["values"][-1]
    best = int(np.argmax(val["values"]))
    assert summary["val_accuracy"]["best"] == val["values"][best]
    assert summary["val_accuracy"]["best_iteration"] == val["iterations"][best]
    val_loss = history(cli, manual["id"], "val_loss")
    assert summary["val_loss"]["best"] == min(val_loss["values"])  # lower is better for a loss

    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        a, b = (np.array(history(cli, j["id"], name)["values"]) for j in (manual, autograd))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    assert history(cli, autograd["id"])["loss"] == losses  # float32 autograd: the inline loop, value for value
    for name, (iterations, values) in metrics.items():
        stored = history(cli, autograd["id"], name)
        assert stored["iterations"] == iterations and stored["values"] == values, name
    assert manual["spec"]["input_size"] == 64 and manual["spec"]["output_size"] == 10
    assert manual["spec"]["data"]["name"] == "digits" and manual["spec"]["data"]["classes"] == 10


def test_mini_batches_follow_the_seeded_order(client, cpu_worker) -> None:
    """Given --batch-size 100 on digits, each iteration trains on the contract's batch: the history equals the
    inline loop's (epoch orders from default_rng([seed, 1, epoch]), a smaller last batch)."""
    job = client.submit_train(dataset="digits", loss="ce", activation="sigmoid", standardize=True,
                              val_fraction=0.25, hidden_size=32, lr=1e-2, iterations=60, eval_every=7,
                              batch_size=100, seed=3, device="cpu")
    assert job.wait(timeout=120).state == "succeeded"
    losses, metrics, _, _ = digits_reference(seed=3, hidden=32, iterations=60, eval_every=7, batch_size=100)
    assert job.losses() == losses
    got = job.metrics()
    for name, (iterations, values) in metrics.items():
        assert got[name].iterations == iterations and got[name].values == values, name
    assert got["val_accuracy"].iterations[-2:] == [56, 60]  # the end is measured off the grid too


def test_a_users_npz_with_a_known_relation_is_learned(cli, cpu_worker, tmp_path: Path) -> None:
    """Given x (300, 5) and y = tanh(x A) (300, 3) in an .npz, sizes come from the data and the loss falls 10x."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    y = np.tanh(x @ rng.standard_normal((5, 3))).astype(np.float32)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    done = submitted(cli, "--data", str(tmp_path / "mine.npz"), "--val-fraction", "0.2", "--hidden-size", "32",
                     "--lr", "1e-4", "--iterations", "1500", "--grad", "manual")
    assert done["spec"]["input_size"] == 5 and done["spec"]["output_size"] == 3
    assert done["spec"]["data"]["rows"] == 300 and done["spec"]["data"]["classes"] is None
    loss = history(cli, done["id"])["loss"]
    assert loss[-1] * 10 <= loss[0], (loss[0], loss[-1])
    val = history(cli, done["id"], "val_loss")["values"]
    assert val[-1] * 10 <= val[0], (val[0], val[-1])
    assert set(done["summary"]["metrics"]) == {"loss", "val_loss"}  # no accuracy for float targets


def test_a_27_job_sweep_stores_its_dataset_once(cli, cpu_worker, redis_server, tmp_path: Path) -> None:
    """Given a 27-job sweep on one .safetensors file, Redis holds one copy of it, about its own size."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 50)).astype(np.float32)
    labels = rng.integers(0, 4, 2000).astype(np.int64)
    save_file({"x": x, "y": labels}, str(tmp_path / "rows.safetensors"))
    r = redis_server.client()
    before = set(r.scan_iter("tensorq:dataset:*"))
    done = cli("submit", "train", "--data", str(tmp_path / "rows.safetensors"), "--loss", "ce", "--iterations", "3",
               "--hidden-size", "8", "--sweep", "lr=1e-4,1e-3,1e-2", "--sweep", "hidden-size=4,8,16", "--seeds", "3",
               "--device", "cpu", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    ended = json.loads(done.stdout)["jobs"]
    assert len(ended) == 27 and {j["state"] for j in ended} == {"succeeded"}
    shas = {j["spec"]["data"]["sha256"] for j in ended}
    assert len(shas) == 1
    stored = set(r.scan_iter("tensorq:dataset:*")) - before
    assert stored == {f"tensorq:dataset:{next(iter(shas))}".encode()}
    footprint = r.memory_usage(next(iter(stored)), samples=0)
    raw = x.nbytes + labels.nbytes
    print(f"\n27 jobs, one dataset of {raw:,} B of arrays: {footprint:,} B in Redis ({footprint / raw:.3f}x)")
    assert footprint < 1.1 * raw
    again = cli("submit", "train", "--data", str(tmp_path / "rows.safetensors"), "--loss", "ce", "--iterations", "3",
                "--device", "cpu", "--json")
    assert again.returncode == 0, again.stderr
    assert set(r.scan_iter("tensorq:dataset:*")) - before == stored  # a later submit does not send it again


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


BAD = {
    "wrong keys": (lambda d: _npz(d / "k.npz", a=np.zeros((4, 2)), b=np.zeros(4)), [], "has no array x or y"),
    "rows disagree": (lambda d: _npz(d / "r.npz", x=np.zeros((4, 2)), y=np.zeros((5, 1))), [],
                      "x has 4 rows but y has 5"),
    "nan in x": (lambda d: _npz(d / "n.npz", x=np.array([[0.0, 1.0], [np.nan, 2.0]]), y=np.zeros((2, 1))), [],
                 "x holds nan or inf (row 1)"),
    "label below 0": (lambda d: _npz(d / "l.npz", x=np.zeros((3, 2)), y=np.array([0, -1, 1])), ["--loss", "ce"],
                      "class ids must be 0 or more"),
    "label out of range": (lambda d: _npz(d / "o.npz", x=np.zeros((3, 2)), y=np.array([0, 1, 2])),
                           ["--loss", "ce", "--output-size", "2"], "disagrees with the data's 3 classes"),
    "pickled arrays": (lambda d: _npz(d / "p.npz", x=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.zeros(2)),
                       [], "pickled (object) arrays"),
    "class ids with sse": (lambda d: _npz(d / "s.npz", x=np.zeros((3, 2)), y=np.array([0, 1, 1])), [],
                           "y holds class ids: train it with --loss ce"),
    "conflicting input size": (lambda d: _npz(d / "c.npz", x=np.zeros((3, 2)), y=np.zeros((3, 1))),
                               ["--input-size", "7"], "--input-size 7 disagrees with the data's 2 inputs"),
    "one-dimensional x": (lambda d: _npz(d / "x.npz", x=np.zeros(3), y=np.zeros(3)), [], "x must be (rows, inputs)"),
    "not a dataset file": (lambda d: str(d / "rows.csv"), [], "use a .npz file"),
    "no such file": (lambda d: str(d / "gone.npz"), [], "no such file"),
    "a broken file": (lambda d: (d / "z.npz").write_bytes(b"not a zip") and str(d / "z.npz"), [], "cannot read z.npz"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_data_is_one_line_and_enqueues_nothing(case: str, cli, redis_server, tmp_path: Path) -> None:
    make, flags, fragment = BAD[case]
    r = redis_server.client()
    jobs_before = r.zcard("tensorq:jobs")
    datasets_before = len(list(r.scan_iter("tensorq:dataset:*")))
    done = cli("submit", "train", "--data", make(tmp_path), *flags)
    assert_one_line_error(done, 2, fragment)
    assert r.zcard("tensorq:jobs") == jobs_before
    assert len(list(r.scan_iter("tensorq:dataset:*"))) == datasets_before


def test_a_bad_spec_beside_good_data_sends_no_data(cli, redis_server, tmp_path: Path) -> None:
    """Given good data and a bad flag (no held-out row left), nothing reaches the broker, the data neither."""
    r = redis_server.client()
    before = len(list(r.scan_iter("tensorq:dataset:*")))
    path = _npz(tmp_path / "ok.npz", x=np.arange(6.0).reshape(3, 2) + 100, y=np.zeros((3, 1)))
    done = cli("submit", "train", "--data", path, "--val-fraction", "0.1")
    assert_one_line_error(done, 2, "--val-fraction 0.1 of 3 rows holds out 0")
    assert len(list(r.scan_iter("tensorq:dataset:*"))) == before


ITERATIONS, CHECKPOINT_EVERY, BATCH = 12_000, 1_000, 128
KILLED = ["--dataset", "digits", "--loss", "ce", "--activation", "sigmoid", "--standardize", "--val-fraction", "0.25",
          "--hidden-size", "256", "--lr", "1e-3", "--iterations", str(ITERATIONS), "--eval-every", "500",
          "--batch-size", str(BATCH), "--seed", "5", "--checkpoint-every", str(CHECKPOINT_EVERY), "--grad", "autograd"]


def test_kill_9_mid_job_with_a_dataset_resumes_to_the_uninterrupted_history(redis_server, tq_home, registry,
                                                                          tmp_path, cli, client) -> None:
    """Given two workers and a mini-batched digits job, kill -9 of the one running it at ~30%: the job resumes
    from its checkpoint on the other, and its history and every metric equal the inline loop's, each point once."""
    workers = [start_launcher(redis_server.url, tq_home, tmp_path / f"{n}.log", "--gpus", "none", "--name", n,
                              "--queue", "crash-data", **FAST_LAPSE) for n in ("data-a", "data-b")]
    try:
        wait_until(lambda: all(len(w.nodes(registry)) == 1 and w.nodes(registry)[0].get("state") in READY_NODE_STATES
                               for w in workers), 90, "both workers")
        job = json.loads(cli("submit", "train", *KILLED, "--queue", "crash-data", "--json").stdout)
        wait_until(lambda: len(client.job(job["id"]).losses()) >= 0.3 * ITERATIONS, 120, "30% progress")
        kill_9_its_worker(client, registry, job["id"])
        killed_at = time.monotonic()
        done = cli("wait", job["id"], "--timeout", "240", "--json")
        assert done.returncode == 0, done.stderr
    finally:
        for w in workers:
            stop_process(w.proc, 40)
    final = json.loads(done.stdout)[0]
    print(f"\nresumed from iteration {final['summary']['resumed_from']}, ended {time.monotonic() - killed_at:.1f} s "
          "after the kill")
    assert final["state"] == "succeeded" and final["attempts"] == 2
    assert final["summary"]["resumed_from"] >= CHECKPOINT_EVERY
    losses, metrics, _, _ = digits_reference(seed=5, hidden=256, learning_rate=1e-3, iterations=ITERATIONS,
                                             eval_every=500, batch_size=BATCH)
    assert client.job(job["id"]).losses() == losses
    got = client.job(job["id"]).metrics()
    for name, (iterations, values) in metrics.items():
        assert got[name].iterations == iterations and got[name].values == values, name
    best = int(np.argmax(metrics["val_accuracy"][1]))
    assert final["summary"]["metrics"]["val_accuracy"]["best_iteration"] == metrics["val_accuracy"][0][best]


def test_a_sweep_ranks_by_held_out_metrics_each_the_right_way(cli, client, cpu_worker) -> None:
    """Given a digits sweep, `group --rank-by val_accuracy` ranks highest first, `--rank-by val_loss` lowest
    first, the client ranks alike, and group, compare and the summary line show the held-out metric."""
    done = cli("submit", "train", "--dataset", "digits", "--loss", "ce", "--activation", "sigmoid", "--standardize",
               "--val-fraction", "0.25", "--hidden-size", "16", "--iterations", "150", "--eval-every", "50",
               "--sweep", "lr=1e-4,3e-3", "--seeds", "2", "--device", "cpu", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    group_id = json.loads(done.stdout)["group"]

    def ranking(metric: str) -> tuple[list[str], dict[str, float]]:
        out = json.loads(cli("group", group_id, "--rank-by", metric, "--json").stdout)
        assert out["rank_by"] == metric
        return out["ranking"], {j["id"]: j["summary"]["metrics"][metric]["last"] for j in out["jobs"]}

    order, last = ranking("val_accuracy")
    assert [last[j] for j in order] == sorted(last.values(), reverse=True)
    assert [r.id for r in client.ranked(group_id, "val_accuracy")] == order
    order, last = ranking("val_loss")
    assert [last[j] for j in order] == sorted(last.values())
    assert [r.id for r in client.ranked(group_id, by="val_loss")] == order

    table = cli("group", group_id, "--rank-by", "val_accuracy")
    assert table.returncode == 0 and "VAL-ACCURACY" in table.stdout
    assert "ranked by the last val_accuracy" in table.stdout
    compared = cli("compare", "--group", group_id)
    assert compared.returncode == 0 and "VAL-ACCURACY" in compared.stdout, compared.stdout
    one = cli("wait", order[0])
    assert "val_accuracy" in one.stdout, one.stdout
    assert cli("group", group_id, "--rank-by", "Bad-Name").returncode == 2
    assert_one_line_error(cli("group", group_id, "--rank-by", "val_f1"), 2, "records 'val_f1'")


def test_the_client_and_job_files_take_the_same_data(client, cli, cpu_worker, tmp_path: Path) -> None:
    """Given (x, y) arrays to the client, and a job file naming a file beside it and `dataset: digits`, the jobs
    train on those rows: the arrays and the file holding them are one dataset, by hash."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64)
    job = client.submit_train(data=(x, labels), loss="ce", hidden_size=4, iterations=20, device="cpu")
    assert job.wait(timeout=60).state == "succeeded"
    sha = job.status().spec["data"]["sha256"]
    assert set(job.metrics()) == {"loss", "accuracy"}

    (tmp_path / "rows").mkdir()
    np.savez(tmp_path / "rows" / "mine.npz", x=x, y=labels)
    (tmp_path / "jobs.yaml").write_text("jobs:\n"
                                        "  - {data: rows/mine.npz, loss: ce, hidden-size: 4, iterations: 20}\n"
                                        "  - {dataset: digits, loss: ce, hidden-size: 4, iterations: 20, "
                                        "val-fraction: 0.5}\n")
    done = cli("submit", "-f", str(tmp_path / "jobs.yaml"), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    mine, digits = json.loads(done.stdout)["jobs"]
    assert mine["spec"]["data"]["sha256"] == sha and mine["spec"]["data"]["name"] == "mine.npz"
    assert digits["spec"]["data"]["name"] == "digits" and digits["summary"]["metrics"]["val_accuracy"]["last"] > 0
    rerun = cli("rerun", digits["id"], "--set", "lr=1e-3", "--wait", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["spec"]["data"] == digits["spec"]["data"]
