"""Experiments as the unit: job files, sweeps and groups, priorities, reruns."""

from __future__ import annotations

import json

import yaml

from tests.support.processes import start_launcher, stop_process, wait_until

TINY = {"batch-size": 8, "input-size": 16, "hidden-size": 8, "output-size": 4, "iterations": 60}


def counts(redis_server) -> tuple[int, ...]:
    r = redis_server.client()
    return (r.zcard("tensorq:jobs"), *(r.llen(q) for q in ("cpu", "cpu.high", "cpu.low", "gpu")))


def test_a_job_file_with_one_bad_job_enqueues_nothing(cli, redis_server, tmp_path) -> None:
    """Given a file whose third job has a bad field, submit exits 2 naming file, job and field; nothing queued."""
    jobs = [{"kind": "train", **TINY}, {"kind": "op", "op": "add", "a": [1, 2], "b": [3, 4]},
            {"kind": "train", **TINY, "hidden-size": -5}]
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump({"jobs": jobs}))
    before = counts(redis_server)
    done = cli("submit", "-f", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {path}: job 3: hidden-size: Input should be greater than or equal to 1"
    assert counts(redis_server) == before


def test_a_job_file_runs_whole_as_one_group(cli, cpu_worker, tmp_path) -> None:
    (tmp_path / "b.npy").write_bytes(b"")  # replaced below by a real array
    import numpy as np

    np.save(tmp_path / "b.npy", np.ones((2, 2), dtype=np.int64))
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([{"kind": "op", "op": "matmul", "a": [[1, 2], [3, 4]], "b": "b.npy"},
                                {"kind": "train", **TINY, "sweep": {"lr": [1e-6, 1e-5]}, "priority": "high"}]))
    done = cli("submit", "-f", str(path), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # with --wait the final status objects are added (keys are only ever added to the contract)
    assert set(out) == {"group", "ids", "jobs"} and len(out["ids"]) == 3
    assert [j["id"] for j in out["jobs"]] == out["ids"] and {j["state"] for j in out["jobs"]} == {"succeeded"}
    group = json.loads(cli("group", out["group"], "--json").stdout)
    assert [j["id"] for j in group["jobs"]] == out["ids"] and group["counts"] == {"succeeded": 3}
    assert group["jobs"][1]["priority"] == "high" and group["jobs"][1]["queue"] == "cpu.high"
    assert json.loads(cli("result", out["ids"][0], "--json").stdout)["data"] == [[3, 3], [7, 7]]


def test_a_3x3_sweep_on_two_workers_ranks_nine_histories(cli, client, cpu_worker, redis_server, tq_home, registry,
                                                          tmp_path) -> None:
    second = start_launcher(redis_server.url, tq_home, tmp_path / "w2.log", "--gpus", "none", "--name", "sweeper",
                            registry=registry)
    try:
        done = cli("submit", "train", "--batch-size", "8", "--input-size", "16", "--output-size", "4",
                  "--iterations", "300", "--sweep", "lr=1e-4,3e-4,1e-3", "--sweep", "hidden-size=4,8,16", "--json")
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert len(out["ids"]) == 9
        assert cli("wait", *out["ids"], "--timeout", "120").returncode == 0
    finally:
        stop_process(second.proc, 40)
    group = json.loads(cli("group", out["group"], "--json").stdout)
    assert group["swept"] == ["hidden_size", "lr"] and group["counts"] == {"succeeded": 9}
    workers = {j["worker"] for j in group["jobs"]}
    assert len(workers) == 2, workers  # both workers took part
    for j in group["jobs"]:
        assert len(client.job(j["id"]).losses()) == 300
    finals = {j["id"]: j["summary"]["final_loss"] for j in group["jobs"]}
    assert group["ranking"] == sorted(finals, key=finals.get)
    grid = {(j["spec"]["lr"], j["spec"]["hidden_size"]) for j in group["jobs"]}
    assert grid == {(lr, h) for lr in (1e-4, 3e-4, 1e-3) for h in (4, 8, 16)}
    shown = cli("group", out["group"])
    assert shown.returncode == 0 and "HIDDEN-SIZE" in shown.stdout and "9 succeeded" in shown.stdout
    assert shown.stdout.index(group["ranking"][0]) < shown.stdout.index(group["ranking"][-1])
    compared = json.loads(cli("compare", "--group", out["group"], "--json", "--no-plot").stdout)
    assert {row["id"] for row in compared["jobs"]} == set(out["ids"])
    assert set(compared["differing_fields"]) == {"hidden_size", "lr"}


def test_seeds_multiply_the_grid(cli, redis_server) -> None:
    done = cli("submit", "train", "--sweep", "lr=1e-6,1e-5,1e-4", "--sweep", "hidden-size=50,100,200", "--seeds",
              "3", "--seed", "10", "--queue", "parked", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out["ids"]) == 27
    group = json.loads(cli("group", out["group"], "--json").stdout)
    assert sorted({j["spec"]["seed"] for j in group["jobs"]}) == [10, 11, 12]
    cancelled = cli("cancel", "--group", out["group"], "--json")
    assert cancelled.returncode == 0
    assert {j["state"] for j in json.loads(cancelled.stdout)} == {"cancelled"}
    assert json.loads(cli("group", out["group"], "--json").stdout)["counts"] == {"cancelled": 27}


def test_a_high_priority_job_runs_next(cli, client, redis_server, tq_home, registry, tmp_path) -> None:
    """Given one busy worker and ten normal jobs waiting, a high-priority job submitted after them runs next."""
    worker = start_launcher(redis_server.url, tq_home, tmp_path / "w.log", "--gpus", "none", "--name", "prio",
                            "--queue", "prio", registry=registry)
    try:
        busy = client.submit_train(queue="prio", iterations=4000, device="cpu", **{"hidden_size": 100})
        wait_until(lambda: busy.status().state == "running", 60, "the worker to be busy")
        normal = [client.submit_op("add", i, 1, queue="prio") for i in range(10)]
        high = client.submit_op("mul", 6, 7, queue="prio", priority="high")
        for job in [busy, *normal, high]:
            assert job.wait(timeout=120).state == "succeeded"
    finally:
        stop_process(worker.proc, 40)
    started = {j.id: j.status().started_at for j in [*normal, high]}
    assert started[high.id] < min(started[j.id] for j in normal)
    normal_order = sorted(normal, key=lambda j: started[j.id])
    assert [j.id for j in normal_order] == [j.id for j in normal]  # FIFO within a level


def test_a_rerun_reproduces_the_original_history(cli, client, cpu_worker) -> None:
    original = json.loads(cli("submit", "train", "--iterations", "200", "--seed", "7", "--wait", "--json").stdout)
    again = cli("rerun", original["id"], "--wait", "--json")
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["rerun_of"] == original["id"] and rerun["spec"] == original["spec"]
    assert client.job(rerun["id"]).losses() == client.job(original["id"]).losses()
    for key in ("torch", "tensorq", "device", "worker"):
        assert key in rerun["summary"]
    changed = json.loads(cli("rerun", original["id"], "--set", "lr=2e-6", "--set", "iterations=50", "--wait",
                            "--json").stdout)
    assert changed["spec"]["lr"] == 2e-6 and changed["spec"]["iterations"] == 50
    assert changed["rerun_of"] == original["id"]
    bad = cli("rerun", original["id"], "--set", "hidden-size=0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --set: hidden-size:")
