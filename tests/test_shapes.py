"""shared/shapes.py: result shapes must agree with what torch itself computes (or refuses)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import shapes
from shared.errors import BadInput

OPS = ("add", "sub", "mul", "div", "matmul")


def torch_shape(op: str, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape torch gives `op(a, b)`; raises RuntimeError where torch refuses."""
    if op == "matmul":
        return tuple(torch.matmul(torch.empty(a), torch.empty(b)).shape)
    return tuple(torch.broadcast_shapes(a, b))


# --- fmt and numel ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "text"), [((), "scalar"), ((5,), "5"), ((2, 3), "2x3"), ([4, 1, 0], "4x1x0")]
)
def test_fmt(shape, text):
    assert shapes.fmt(shape) == text


@pytest.mark.parametrize(("shape", "n"), [((), 1), ((7,), 7), ((2, 3, 4), 24), ((3, 0, 5), 0)])
def test_numel_matches_torch(shape, n):
    assert shapes.numel(shape) == n == torch.empty(shape).numel()


# --- broadcast -------------------------------------------------------------------------------------

BROADCASTABLE = [
    ((), ()),
    ((), (2, 3)),
    ((3,), (2, 3)),
    ((2, 1), (1, 3)),
    ((5, 1, 4), (3, 1)),
    ((1,), (0,)),
    ((2, 0), (1,)),
    ((8, 1, 6, 1), (7, 1, 5)),
]


@pytest.mark.parametrize(("a", "b"), BROADCASTABLE)
def test_broadcast_matches_torch(a, b):
    assert shapes.broadcast(a, b, "add") == torch_shape("add", a, b)
    assert shapes.broadcast(b, a, "add") == torch_shape("add", b, a)


@pytest.mark.parametrize(("a", "b"), [((2, 3), (4,)), ((2,), (3,)), ((0,), (2,)), ((2, 3, 4), (3, 3, 4))])
def test_broadcast_refuses_what_torch_refuses(a, b):
    with pytest.raises(RuntimeError):
        torch_shape("add", a, b)
    with pytest.raises(BadInput, match=r"^mul: cannot broadcast "):
        shapes.broadcast(a, b, "mul")


def test_broadcast_error_names_both_shapes():
    with pytest.raises(BadInput) as info:
        shapes.broadcast((2, 3), (4,), "sub")
    assert str(info.value) == "sub: cannot broadcast 2x3 with 4"


# --- matmul ----------------------------------------------------------------------------------------

MULTIPLIABLE = [
    pytest.param((3,), (3,), id="1d@1d"),
    pytest.param((3,), (3, 4), id="1d@2d"),
    pytest.param((3,), (2, 3, 4), id="1d@3d"),
    pytest.param((2, 3), (3,), id="2d@1d"),
    pytest.param((5, 2, 3), (3,), id="3d@1d"),
    pytest.param((2, 3), (3, 4), id="2d@2d"),
    pytest.param((6, 2, 3), (3, 4), id="3d@2d"),
    pytest.param((2, 3), (6, 3, 4), id="2d@3d"),
    pytest.param((2, 1, 3, 4), (5, 4, 2), id="batch-broadcast"),
    pytest.param((1, 3, 4), (7, 4, 2), id="batch-1-vs-7"),
    pytest.param((0, 2, 3), (3, 4), id="empty-batch"),
    pytest.param((2, 0), (0, 3), id="empty-inner"),
    pytest.param((0,), (0,), id="empty-1d"),
]


@pytest.mark.parametrize(("a", "b"), MULTIPLIABLE)
def test_matmul_matches_torch(a, b):
    assert shapes.matmul(a, b) == torch_shape("matmul", a, b)
    assert shapes.result_shape("matmul", a, b) == torch_shape("matmul", a, b)


REFUSED = [
    pytest.param((2, 3), (2, 2), id="inner-mismatch"),
    pytest.param((3,), (4,), id="1d-mismatch"),
    pytest.param((2, 3), (4,), id="2d@1d-mismatch"),
    pytest.param((4,), (3, 2), id="1d@2d-mismatch"),
    pytest.param((2, 2, 3), (3, 3, 4), id="batch-mismatch"),
    pytest.param((), (3,), id="scalar-left"),
    pytest.param((3,), (), id="scalar-right"),
]


@pytest.mark.parametrize(("a", "b"), REFUSED)
def test_matmul_refuses_what_torch_refuses(a, b):
    with pytest.raises(RuntimeError):
        torch_shape("matmul", a, b)
    with pytest.raises(BadInput, match=r"^matmul: "):
        shapes.matmul(a, b)


def test_matmul_error_text_is_exact():
    """Given 2x3 and 2x2, When multiplied, Then the message names both shapes in torch's terms."""
    with pytest.raises(BadInput) as info:
        shapes.matmul((2, 3), (2, 2))
    assert str(info.value) == "matmul: cannot multiply 2x3 by 2x2"


def test_matmul_batch_error_is_a_broadcast_error():
    with pytest.raises(BadInput, match=r"^matmul: cannot broadcast 2 with 3$"):
        shapes.matmul((2, 2, 3), (3, 3, 4))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_result_shape_of_elementwise_ops_is_the_broadcast(op):
    assert shapes.result_shape(op, (4, 1), (3,)) == (4, 3)
    with pytest.raises(BadInput, match=rf"^{op}: "):
        shapes.result_shape(op, (4, 2), (3,))


# --- agreement with torch on random shapes ---------------------------------------------------------

small_shapes = st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=4).map(tuple)


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(OPS), a=small_shapes, b=small_shapes)
def test_result_shape_agrees_with_torch(op, a, b):
    """For any small shapes, result_shape raises BadInput exactly when torch raises, else gives its shape."""
    try:
        expected = torch_shape(op, a, b)
    except RuntimeError:
        with pytest.raises(BadInput):
            shapes.result_shape(op, a, b)
    else:
        assert shapes.result_shape(op, a, b) == expected
