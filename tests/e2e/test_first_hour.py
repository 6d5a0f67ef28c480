"""The new-user report's smaller findings, each kept fixed: the real CLI, a real Redis, a real CPU worker."""

from __future__ import annotations

import json

TINY = ["--batch-size", "4", "--input-size", "5", "--hidden-size", "3", "--output-size", "2", "--device", "cpu"]


def test_wait_takes_a_group(cli, cpu_worker) -> None:
    group = json.loads(cli("submit", "train", *TINY, "--iterations", "30", "--seeds", "2", "--json").stdout)["group"]
    done = cli("wait", "--group", group, "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    assert [s["state"] for s in json.loads(done.stdout)] == ["succeeded", "succeeded"]


def test_a_job_file_waited_on_tells_each_outcome(cli, cpu_worker, tmp_path) -> None:
    """Given `submit -f --wait`, Then each job's outcome is printed (and, with --json, the final status objects
    are added to {"group", "ids"})."""
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([{"kind": "op", "op": "add", "a": 1, "b": 2, "device": "cpu"},
                                {"kind": "op", "op": "mul", "a": 3, "b": 4, "device": "cpu"}]))
    done = cli("submit", "-f", str(path), "--wait", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("succeeded") == 2
    as_json = json.loads(cli("submit", "-f", str(path), "--wait", "--json", timeout=120).stdout)
    assert set(as_json) == {"group", "ids", "jobs"}
    assert [j["id"] for j in as_json["jobs"]] == as_json["ids"]
    assert [j["state"] for j in as_json["jobs"]] == ["succeeded", "succeeded"]


def test_rerun_set_names_its_own_flag(cli, cpu_worker) -> None:
    job = json.loads(cli("submit", "op", "add", "1", "2", "--device", "cpu", "--json").stdout)["id"]
    done = cli("rerun", job, "--set", "lr")
    assert done.returncode == 2 and done.stderr.startswith("error: --set: expected FIELD=VALUE"), done.stderr


def test_a_large_result_as_json_is_one_line_of_data(cli, cpu_worker) -> None:
    job = json.loads(cli("submit", "op", "add", "randn:64x64", "0", "--seed", "1", "--device", "cpu", "--wait",
                        "--json").stdout)["id"]
    printed = cli("result", job, "--json").stdout
    assert len(printed.splitlines()) == 1 and len(json.loads(printed)["data"]) == 64


def test_a_short_id_prefix_finds_its_job(cli, cpu_worker) -> None:
    job = json.loads(cli("submit", "op", "add", "1", "2", "--device", "cpu", "--wait", "--json").stdout)["id"]
    status = cli("status", job[:8], "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["id"] == job


def test_cuda_graph_without_a_gpu_worker_is_refused_before_enqueue(cli, cpu_worker) -> None:
    done = cli("submit", "train", "--cuda-graph", "--iterations", "5")
    assert done.returncode == 2 and "--cuda-graph needs a GPU worker" in done.stderr, done.stderr


def test_the_cli_prints_the_clients_unserved_queue_warning_once_in_one_line(cli, cpu_worker) -> None:
    done = cli("submit", "op", "add", "1", "2", "--device", "cuda", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["warning: no live worker consumes queue 'gpu'; jobs wait there until one does"]
    cli("cancel", json.loads(done.stdout)["id"])


def test_a_queued_jobs_place_counts_the_higher_levels_ahead_of_it(client) -> None:
    """Given 3 high-priority jobs waiting ahead of a normal one (report item b), Then the normal one is #4."""
    from producer.watch import queue_position

    r = client.store.redis
    r.delete("posq.high", "posq", "posq.low")
    for n in range(3):
        r.lpush("posq.high", json.dumps({"headers": {"id": f"high{n}"}}))
    r.lpush("posq", json.dumps({"headers": {"id": "first-normal"}}))
    r.lpush("posq", json.dumps({"headers": {"id": "the-job"}}))
    r.lpush("posq.low", json.dumps({"headers": {"id": "low-job"}}))
    assert queue_position(client.store, "posq", "the-job") == 5
    assert queue_position(client.store, "posq.high", "high0", "high") == 1
    assert queue_position(client.store, "posq.low", "low-job", "low") == 6
    assert queue_position(client.store, "posq", "not-there") is None
    r.delete("posq.high", "posq", "posq.low")


def test_results_and_weights_as_pt_files(cli, cpu_worker, tmp_path) -> None:
    """Given `-o x.pt`, Then torch.load(weights_only=True) reads the op's result, and a training job's weights
    as a dict {"w1", "w2"} equal to its safetensors."""
    import torch
    from safetensors.torch import load_file

    op = json.loads(cli("submit", "op", "add", "[1., 2.]", "1", "--device", "cpu", "--wait", "--json").stdout)["id"]
    assert cli("result", op, "-o", str(tmp_path / "r.pt")).returncode == 0
    assert torch.load(tmp_path / "r.pt", weights_only=True).tolist() == [2.0, 3.0]
    run = json.loads(cli("submit", "train", *TINY, "--iterations", "10", "--wait", "--json").stdout)["id"]
    assert cli("result", run, "-o", str(tmp_path / "w.pt")).returncode == 0
    assert cli("result", run, "-o", str(tmp_path / "w.safetensors")).returncode == 0
    pt, st = torch.load(tmp_path / "w.pt", weights_only=True), load_file(tmp_path / "w.safetensors")
    assert set(pt) == {"w1", "w2"} and all(torch.equal(pt[k], st[k]) for k in pt)
