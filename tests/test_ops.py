"""worker/ops.py on the CPU, no worker: each op gives torch's own answer, dtypes promote as torch promotes them
(matmul too), `dtype` casts both operands, randn operands are drawn from the seed a first then b, and the
spec's predicted result dtype is what the op makes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from shared import tensors
from shared.specs import TensorOpSpec, parse_spec
from shared.vocab import Op, OpDtype
from worker import ops

CPU = torch.device("cpu")
A = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
B = [[[9, 10], [3, 4]], [[5, 6], [7, 8]]]


def torch_op(op: Op) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """torch's own function of that name, the reference: a new op in the enum is checked here unchanged."""
    function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = getattr(torch, op.value)
    return function


def data(value: Any, dtype: str | None = None) -> dict[str, Any]:
    """An operand in the message: an array as it is, else a literal read as torch.tensor reads it (or as `dtype`)."""
    if not isinstance(value, np.ndarray):
        value = np.asarray(value, dtype=dtype) if dtype else tensors.from_literal(value)
    return {"source": "data", **tensors.encode(value)}


def randn(*shape: int) -> dict[str, Any]:
    return {"source": "randn", "shape": list(shape)}


def spec(op: str, a: dict[str, Any], b: dict[str, Any], **extra: Any) -> TensorOpSpec:
    parsed = parse_spec({"kind": "op", "op": op, "a": a, "b": b, **extra})
    assert isinstance(parsed, TensorOpSpec)
    return parsed


@pytest.mark.parametrize("op", list(Op))
def test_each_op_gives_torchs_exact_answer_on_the_notes_tensors(op: Op) -> None:
    result, device = ops.run(spec(op.value, data(A), data(B)), CPU)
    expected = torch_op(op)(torch.tensor(A), torch.tensor(B))
    assert device == CPU and result.device == CPU
    assert result.dtype == expected.dtype and torch.equal(result, expected)


def test_the_op_table_covers_every_op() -> None:
    assert set(ops.OPS) == set(Op) and set(ops.DTYPES) == set(OpDtype)


WIRE = ["int32", "int64", "float16", "float32", "float64"]
PAIRS = [(op, a, b) for op in Op for a, b in itertools.product(WIRE, WIRE)]


def torchs(op: Op, a_dtype: str, b_dtype: str) -> tuple[TensorOpSpec, torch.Tensor]:
    """A job on small operands of these dtypes, and what torch itself makes of them (matmul, which torch refuses
    to mix, on both promoted first)."""
    a, b = [[1, 2], [3, 4]], [[2, 1], [1, 2]]
    ta, tb = torch.tensor(a, dtype=getattr(torch, a_dtype)), torch.tensor(b, dtype=getattr(torch, b_dtype))
    if op is Op.MATMUL:
        common = torch.promote_types(ta.dtype, tb.dtype)
        ta, tb = ta.to(common), tb.to(common)
    return spec(op.value, data(a, a_dtype), data(b, b_dtype)), torch_op(op)(ta, tb)


@pytest.mark.parametrize(("op", "a_dtype", "b_dtype"), PAIRS)
def test_dtypes_promote_as_torch_promotes_them(op: Op, a_dtype: str, b_dtype: str) -> None:
    job, expected = torchs(op, a_dtype, b_dtype)
    result, _ = ops.run(job, CPU)
    assert result.dtype == expected.dtype and torch.equal(result, expected)


@pytest.mark.parametrize(("op", "a_dtype", "b_dtype"), PAIRS)
def test_the_spec_predicts_the_result_dtype_before_the_job_runs(op: Op, a_dtype: str, b_dtype: str) -> None:
    job, expected = torchs(op, a_dtype, b_dtype)
    assert job.result_dtype == str(expected.dtype).removeprefix("torch.")


def test_an_int_literal_times_randn_is_float32() -> None:
    """The README's client example: int64 `[[1, 2], [3, 4]]` @ float32 randn:2x2."""
    result, _ = ops.run(spec("matmul", data([[1, 2], [3, 4]]), randn(2, 2), seed=0), CPU)
    b = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    assert result.dtype == torch.float32 and torch.equal(result, torch.tensor([[1., 2.], [3., 4.]]) @ b)


def test_integer_division_is_true_division() -> None:
    result, _ = ops.run(spec("div", data([1, 3]), data([2, 2])), CPU)
    assert result.dtype == torch.float32 and result.tolist() == [0.5, 1.5]


def test_dtype_casts_both_operands_before_the_op() -> None:
    job = spec("add", data([1.5, 2.25]), data([1, 2]), dtype="float64")
    a, b = ops.operands(job)
    assert a.dtype == b.dtype == torch.float64
    result, _ = ops.run(job, CPU)
    assert result.dtype == torch.float64 and result.tolist() == [2.5, 4.25]
    truncated, _ = ops.run(spec("add", data([1.5, 2.25]), data([1, 2]), dtype="int32"), CPU)
    assert truncated.dtype == torch.int32 and truncated.tolist() == [2, 4]


def test_data_operands_arrive_exactly_as_sent() -> None:
    a = np.array([[0.1, -2.5e-300], [np.inf, np.nan]], dtype=np.float64)
    got, _ = ops.operands(spec("add", data(a), data(1.0)))
    assert got.dtype == torch.float64 and np.array_equal(got.numpy(), a, equal_nan=True)


def test_randn_operands_are_drawn_from_the_seed_a_first_then_b() -> None:
    job = spec("matmul", randn(2, 3, 4), randn(4, 5), seed=7)
    gen = torch.Generator().manual_seed(7)
    a, b = torch.randn(2, 3, 4, generator=gen), torch.randn(4, 5, generator=gen)
    got_a, got_b = ops.operands(job)
    assert torch.equal(got_a, a) and torch.equal(got_b, b)
    result, _ = ops.run(job, CPU)
    assert result.shape == (2, 3, 5) and torch.equal(result, torch.matmul(a, b))


def test_randn_from_a_seed_is_the_same_every_time_and_another_seed_differs() -> None:
    first, _ = ops.run(spec("add", randn(3), randn(3), seed=11), CPU)
    again, _ = ops.run(spec("add", randn(3), randn(3), seed=11), CPU)
    other, _ = ops.run(spec("add", randn(3), randn(3), seed=12), CPU)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_randn_operand_beside_a_data_one_takes_the_first_draw() -> None:
    _, b = ops.operands(spec("add", data([1.0, 2.0]), randn(2), seed=3))
    assert torch.equal(b, torch.randn(2, generator=torch.Generator().manual_seed(3)))


def test_scalars_broadcast_and_stay_scalars() -> None:
    result, _ = ops.run(spec("add", data(1), data(2.5)), CPU)
    assert result.shape == () and result.dtype == torch.float32 and result.item() == 3.5
    broadcast, _ = ops.run(spec("mul", data([[1.0, 2.0, 3.0]]), data([[2.0], [-1.0]])), CPU)
    assert broadcast.tolist() == [[2.0, 4.0, 6.0], [-1.0, -2.0, -3.0]]


def test_to_numpy_gives_a_contiguous_copy_of_a_strided_result() -> None:
    strided = torch.arange(6.0).reshape(2, 3).t()
    array = ops.to_numpy(strided)
    assert array.flags["C_CONTIGUOUS"] and array.tolist() == strided.tolist()
