"""Tensors as a PyTorch user types them, end to end: the real CLI (in-process), a real Redis, a real worker, and
torch's answer as the reference for every case."""

from __future__ import annotations

import json

import pytest
import torch

NOTE_A = """[[[1., 2.],
   [3., 4.]],

  [[5., 6.],
   [7., 8.]]]"""
NOTE_B = "torch.tensor([[[9., 10.],\n               [3., 4.]],\n              [[5., 6.],\n               [7., 8.]]])"


def result_of(cli, *args: str) -> dict:
    done = cli("submit", "op", "--device", "cpu", "--wait", "--json", *args)  # options first: args may hold --
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["state"] == "succeeded", status
    got = cli("result", status["id"], "--json")
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def test_the_notes_tensors_pasted_from_the_note(cli, cpu_worker) -> None:
    """Given the note's 2x2x2 float tensors pasted with their newlines, indentation and `torch.tensor(...)`,
    Then matmul gives torch's answer."""
    got = result_of(cli, "matmul", NOTE_A, NOTE_B)
    a = torch.tensor([[[1., 2.], [3., 4.]], [[5., 6.], [7., 8.]]])
    b = torch.tensor([[[9., 10.], [3., 4.]], [[5., 6.], [7., 8.]]])
    assert got["dtype"] == "float32" and got["data"] == torch.matmul(a, b).tolist()


@pytest.mark.parametrize(("args", "expected"), [
    (["add", "-1", "2"], torch.tensor(-1) + torch.tensor(2)),
    (["sub", "2", "-1.5"], torch.tensor(2) - torch.tensor(-1.5)),
    (["mul", "-1e-3", "(1, 2)"], torch.tensor(-1e-3) * torch.tensor((1, 2))),
    (["add", "--", "-1", "-2"], torch.tensor(-3)),
])
def test_negative_numbers_and_tuples_are_operands(cli, cpu_worker, args: list[str], expected: torch.Tensor) -> None:
    got = result_of(cli, *args)
    assert got["dtype"] == str(expected.dtype).removeprefix("torch.")
    assert got["data"] == expected.tolist()


@pytest.mark.parametrize(("a", "b"), [("0.1", "0.2"), ("1e39", "1"), ("5e-324", "0"), ("[0.1, 1e-310]", "0.7")])
def test_float64_keeps_the_precision_typed(cli, cpu_worker, a: str, b: str) -> None:
    """Given --dtype float64, Then the literals never pass through float32: 0.1 + 0.2 is torch's
    0.30000000000000004, 1e39 stays 1e39, subnormals survive."""
    got = result_of(cli, "add", a, b, "--dtype", "float64")
    expected = torch.tensor(eval(a), dtype=torch.float64) + torch.tensor(eval(b), dtype=torch.float64)  # noqa: S307
    assert got["dtype"] == "float64" and got["data"] == expected.tolist()


def test_nan_and_inf_operands_and_a_strict_json_result_on_disk(cli, cpu_worker, tmp_path) -> None:
    """Given `nan`, `inf`, a division by zero, Then the job runs as torch would, and `-o x.json` writes strict
    JSON (null for each non-finite number, as `--json` prints)."""
    done = cli("submit", "op", "div", "[1.0, -1.0, 0.0, nan]", "0", "--device", "cpu", "--wait", "--json")
    job = json.loads(done.stdout)["id"]
    out = tmp_path / "dz.json"
    assert cli("result", job, "-o", str(out)).returncode == 0
    written = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert written["data"] == [None, None, None, None]
    got = result_of(cli, "add", "inf", "1")
    assert got["data"] is None  # inf + 1 = inf, written as null
    back = result_of(cli, "mul", str(out), "1")  # the strict form reads back: null is nan
    assert back["dtype"] == "float32" and back["data"] == [None] * 4


def test_the_readme_matmul_of_an_int_literal_and_randn(cli, cpu_worker) -> None:
    """Given int64 `[[1, 2], [3, 4]]` against float32 `randn:2x2` (the README's client example), Then matmul
    promotes as the element-wise ops do and gives float32."""
    got = result_of(cli, "matmul", "[[1, 2], [3, 4]]", "randn:2x2", "--seed", "0")
    b = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    assert got["dtype"] == "float32"
    assert got["data"] == torch.matmul(torch.tensor([[1., 2.], [3., 4.]]), b).tolist()

