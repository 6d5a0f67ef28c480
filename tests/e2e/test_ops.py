"""Tensor-op jobs end to end: the real CLI, a real Redis, a real `tensorq worker`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

A = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
B = [[[9, 10], [3, 4]], [[5, 6], [7, 8]]]
TORCH_OPS = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "matmul": torch.matmul}


def submit_and_wait(cli, *args: str) -> dict:
    done = cli("submit", "op", *args, "--wait", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("op", list(TORCH_OPS))
def test_the_notes_tensors_give_torchs_exact_answers(cli, cpu_worker, op: str) -> None:
    """Given the note's two 2x2x2 tensors, when OP runs as a job, the result equals torch's, dtype included."""
    status = submit_and_wait(cli, op, json.dumps(A), json.dumps(B))
    assert status["state"] == "succeeded" and status["worker"].startswith("cpu")
    result = cli("result", status["id"], "--json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    expected = TORCH_OPS[op](torch.tensor(A), torch.tensor(B))
    assert got["dtype"] == str(expected.dtype).removeprefix("torch.")
    assert got["shape"] == list(expected.shape)
    assert got["data"] == expected.tolist()


def test_randn_operands_are_seeded_like_torch(cli, cpu_worker) -> None:
    status = submit_and_wait(cli, "matmul", "randn:2x3x4", "randn:4x5", "--seed", "7")
    got = json.loads(cli("result", status["id"], "--json").stdout)
    gen = torch.Generator().manual_seed(7)
    a, b = torch.randn(2, 3, 4, generator=gen), torch.randn(4, 5, generator=gen)
    assert got["shape"] == [2, 3, 5]
    assert got["data"] == torch.matmul(a, b).tolist()
    assert status["spec"]["seed"] == 7


def test_randn_without_a_seed_records_the_seed_it_used(cli, cpu_worker) -> None:
    status = submit_and_wait(cli, "add", "randn:3", "randn:3")
    seed = status["spec"]["seed"]
    assert isinstance(seed, int)
    gen = torch.Generator().manual_seed(seed)
    expected = torch.randn(3, generator=gen) + torch.randn(3, generator=gen)
    assert json.loads(cli("result", status["id"], "--json").stdout)["data"] == expected.tolist()


def test_broadcasting_and_files_in_and_out(cli, cpu_worker, tmp_path) -> None:
    """Given a .npy operand and a scalar, the result broadcasts; -o writes .npy, .safetensors and .json."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "a.npy", a)
    status = submit_and_wait(cli, "mul", str(tmp_path / "a.npy"), "[[2.5], [-1]]")
    expected = (torch.from_numpy(a) * torch.tensor([[2.5], [-1.0]])).numpy()
    for suffix in (".npy", ".safetensors", ".json"):
        out = tmp_path / f"out{suffix}"
        written = cli("result", status["id"], "-o", str(out))
        assert written.returncode == 0, written.stderr
        from shared.tensors import load_file

        assert np.array_equal(load_file(out), expected)


def test_result_prints_the_tensor(cli, cpu_worker) -> None:
    status = submit_and_wait(cli, "add", "[1, 2]", "[10, 20]")
    shown = cli("result", status["id"])
    assert shown.returncode == 0
    assert "[11 22]" in shown.stdout and "int64" in shown.stdout


def test_scalars_stay_scalars(cli, cpu_worker) -> None:
    got = json.loads(cli("result", submit_and_wait(cli, "add", "1", "2.5")["id"], "--json").stdout)
    assert got == {"dtype": "float32", "shape": [], "data": 3.5}


def test_json_stays_strict_when_results_are_not_finite(cli, cpu_worker) -> None:
    """Given 1/0 and 0/0, `result --json` is strict JSON: the infinities and NaN are null."""
    status = submit_and_wait(cli, "div", "[1.0, 0.0, 2.0]", "[0.0, 0.0, 4.0]")
    out = cli("result", status["id"], "--json").stdout
    assert "Infinity" not in out and "NaN" not in out
    assert json.loads(out)["data"] == [None, None, 0.5]


def test_python_client_round_trip(client, cpu_worker) -> None:
    job = client.submit_op("matmul", np.eye(2, dtype=np.float32), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    record = job.wait(timeout=60)
    assert record.state == "succeeded"
    assert job.result().tolist() == [[1.0, 2.0], [3.0, 4.0]]
