"""producer/inputs.py: every form a user may give an operand in becomes a spec part, or a labelled BadInput."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from producer.inputs import operand
from shared import defaults, specs, tensors
from shared.errors import BadInput


def decoded(part: dict) -> np.ndarray:
    assert part["source"] == "data"
    return tensors.decode({k: v for k, v in part.items() if k != "source"})


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def refused(value: object, label: str = "A") -> str:
    with pytest.raises(BadInput) as info:
        operand(value, label)
    message = str(info.value)
    assert message.startswith(f"{label}: "), message
    return message


# --- JSON literals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("[1, 2, 3]", np.array([1, 2, 3], np.int64)),
        ("  [[1.5, 2], [3, 4]] ", np.array([[1.5, 2], [3, 4]], np.float32)),
        ("3", np.array(3, np.int64)),
        ("-0.5", np.array(-0.5, np.float32)),
    ],
)
def test_json_literal(text, want):
    assert_same(decoded(operand(text, "A")), want)


NOTE_TENSOR = """torch.tensor([[[1., 2.],
               [3., 4.]],

              [[5., 6.],
               [7., 8.]]])"""


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("[[1., 2.], [3., 4.]]", np.array([[1, 2], [3, 4]], np.float32)),
        ("[[1., 2.],\n [3., 4.]]", np.array([[1, 2], [3, 4]], np.float32)),
        (NOTE_TENSOR, np.arange(1, 9, dtype=np.float32).reshape(2, 2, 2)),
        (NOTE_TENSOR.removeprefix("torch.tensor(").removesuffix(")"),
         np.arange(1, 9, dtype=np.float32).reshape(2, 2, 2)),
        ("1e-3", np.array(1e-3, np.float32)),
        ("-1.5", np.array(-1.5, np.float32)),
        ("+2", np.array(2, np.int64)),
        (".5", np.array(0.5, np.float32)),
        ("(1, 2)", np.array([1, 2], np.int64)),
        ("((1, 2), [3, 4])", np.array([[1, 2], [3, 4]], np.int64)),
        ("[1, 2],[3, 4]", np.array([[1, 2], [3, 4]], np.int64)),
        ("[1e39]", np.array([np.inf], np.float32)),
    ],
)
def test_python_literal(text, want):
    """Given a literal as a PyTorch user types it (or pastes it from the note), Then it reads as torch.tensor would."""
    assert_same(decoded(operand(text, "A")), want)


@pytest.mark.parametrize("text", ["nan", "NaN", "[nan, 1.0]", "inf", "-inf", "[-Infinity]", "[math.inf, torch.nan]"])
def test_non_finite_literals(text):
    got = decoded(operand(text, "A"))
    assert got.dtype == np.float32
    assert not np.isfinite(got).all()
    assert np.isnan(got).any() == ("nan" in text.lower())


@pytest.mark.parametrize(
    ("text", "want"),
    [("0.1", 0.1), ("1e39", 1e39), ("5e-324", 5e-324), ("[0.1, 0.2]", [0.1, 0.2]), ("1", 1.0)],
)
def test_literal_read_straight_into_float64(text, want):
    """Given --dtype float64, Then the literal keeps every digit typed (it never passes through float32)."""
    got = decoded(operand(text, "A", "float64"))
    assert got.dtype == np.float64
    assert got.tolist() == want


def test_float_literal_cast_to_an_integer_dtype_truncates_as_torch_does():
    assert_same(decoded(operand("[1.5, 2.7, -1.5]", "A", "int32")), np.array([1, 2, -1], np.int32))


@pytest.mark.parametrize(("text", "dtype", "why"), [
    ("nan", "int64", "nan and inf cannot be held by int64"),
    ("3000000000", "int32", "out of the range of int32"),
])
def test_literal_that_a_dtype_cannot_hold(text, dtype, why):
    with pytest.raises(BadInput, match=why):
        operand(text, "A", dtype)


def test_literal_is_never_evaluated(tmp_path, monkeypatch):
    """Given code instead of a literal, Then it is refused and nothing runs."""
    monkeypatch.chdir(tmp_path)
    for text in ["[__import__('os').mkdir('x')]", "[(lambda: 1)()]", "[1 + 1]"]:
        with pytest.raises(BadInput, match="not a valid literal"):
            operand(text, "A")
    assert not (tmp_path / "x").exists()


def test_literal_over_the_element_limit_is_refused_before_parsing(monkeypatch):
    monkeypatch.setattr(defaults, "MAX_TENSOR_ELEMENTS", 4)
    assert "too long for a literal" in refused("[" + "1., " * 200 + "1.]")
    assert "over the limit" in refused("[1., 2., 3., 4., 5.]")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[1, 2", "not a valid literal"),
        ("[1, 2]]", "not a valid literal"),
        ("[1, x]", "not a valid literal ('x' is not a number"),
        ("[1, 2][0]", "not a valid literal"),
        ("torch.tensor([1], dtype=torch.int32)", "takes the data alone"),
        ("-[1, 2]", "a sign before a list"),
        ("[" * 20 + "1" + "]" * 20, "more than 8 dimensions"),
        ("[[1, 2], [3]]", "rectangular"),
        ("[true, false]", "booleans"),
        ("[]", "empty"),
        ("", "empty operand"),
        ("   ", "empty operand"),
    ],
)
def test_bad_json_literal(text, why):
    assert why in refused(text)


# --- randn -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [("randn:2x2x2", [2, 2, 2]), ("RANDN:2X3", [2, 3]), ("Randn:7", [7]), (" randn:1x4 ", [1, 4])],
)
def test_randn(text, shape):
    assert operand(text, "A") == {"source": "randn", "shape": shape}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("randn:2x0", "each at least 1"),
        ("randn:" + "x".join(["1"] * (defaults.MAX_TENSOR_DIMS + 1)), "each at least 1"),
        ("randn:abc", "expected randn:SHAPE"),
        ("randn:", "expected randn:SHAPE"),
        ("randn", "expected randn:SHAPE"),
        ("randn:2x", "expected randn:SHAPE"),
        ("randn:-2", "expected randn:SHAPE"),
        ("randn:2,3", "expected randn:SHAPE"),
    ],
)
def test_bad_randn(text, why):
    assert why in refused(text, "B").removeprefix("B: ")


# --- files -----------------------------------------------------------------------------------------


@pytest.fixture
def array() -> np.ndarray:
    return np.arange(6, dtype=np.float32).reshape(2, 3)


def test_npy_file(tmp_path, array):
    path = tmp_path / "a.npy"
    np.save(path, array)
    assert_same(decoded(operand(str(path), "A")), array)


def test_relative_npy_file(tmp_path, monkeypatch, array):
    """Given `./a.npy` (a path that starts like a number), Then it is read as a file, not as JSON."""
    monkeypatch.chdir(tmp_path)
    np.save("a.npy", array)
    assert_same(decoded(operand("a.npy", "A")), array)
    assert_same(decoded(operand("./a.npy", "A")), array)


def test_home_relative_file(tmp_path, monkeypatch, array):
    monkeypatch.setenv("HOME", str(tmp_path))
    tensors.save_file(array, tmp_path / "a.safetensors")
    assert_same(decoded(operand("~/a.safetensors", "A")), array)


def test_named_tensor_in_safetensors(tmp_path, array):
    path = tmp_path / "w.safetensors"
    path.write_bytes(tensors.safetensors_bytes({"w": array, "b": np.zeros(3, np.int64)}))
    assert_same(decoded(operand(f"{path}:b", "B")), np.zeros(3, np.int64))
    assert "holds 2 tensors" in refused(str(path), "B")


def test_missing_file(tmp_path):
    assert "no such file" in refused(str(tmp_path / "nope.npy"))


def test_unknown_word_is_a_missing_file():
    assert "no such file" in refused("ones")


# --- arrays, lists and torch tensors ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64])
def test_numpy_array_keeps_its_dtype(dtype):
    array = np.arange(6).astype(dtype).reshape(3, 2)
    assert_same(decoded(operand(array, "A")), array)


def test_non_contiguous_numpy_array():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    assert_same(decoded(operand(array, "A")), array)


def test_big_endian_float32_array_is_a_float32():
    """Given a valid float32 array in big-endian byte order (as some .npy files are), Then it is accepted."""
    array = np.arange(4, dtype=">f4")
    assert_same(decoded(operand(array, "A")), array.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.complex64, object])
def test_numpy_array_of_other_dtype(dtype):
    assert "unsupported dtype" in refused(np.zeros(2, dtype=dtype))


def test_element_limit():
    too_many = np.broadcast_to(np.float32(0), (defaults.MAX_TENSOR_ELEMENTS + 1,))
    assert "over the limit of 4,194,304" in refused(too_many)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ([[1, 2], [3, 4]], np.array([[1, 2], [3, 4]], np.int64)),
        ([1.5, 2], np.array([1.5, 2], np.float32)),
        (4, np.array(4, np.int64)),
    ],
)
def test_python_values(value, want):
    assert_same(decoded(operand(value, "A")), want)


@pytest.mark.parametrize("value", [[[1, 2], [3]], [True], [], None, "", {"a": 1}])
def test_bad_python_values(value):
    refused(value)


@pytest.mark.parametrize(
    "tensor",
    [
        pytest.param(torch.arange(6, dtype=torch.float32).reshape(2, 3), id="float32"),
        pytest.param(torch.arange(6).reshape(3, 2), id="int64"),
        pytest.param(torch.ones(2, 2, dtype=torch.float64, requires_grad=True), id="requires-grad"),
        pytest.param(torch.arange(12, dtype=torch.float32).reshape(3, 4).T, id="transposed"),
        pytest.param(torch.tensor(2.5), id="0d"),
    ],
)
def test_torch_tensor(tensor):
    assert_same(decoded(operand(tensor, "A")), tensor.detach().numpy())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.bool, torch.uint8, torch.complex64])
def test_torch_tensor_of_unsupported_dtype(dtype):
    """Given a torch tensor numpy or the wire cannot carry, Then a labelled BadInput, not a TypeError."""
    refused(torch.zeros(2, dtype=dtype))


# --- the parts make a valid spec -------------------------------------------------------------------


def test_operands_make_a_valid_spec(tmp_path):
    path = tmp_path / "b.npy"
    np.save(path, np.ones((3, 4), np.float32))
    spec = specs.parse_spec({"kind": "op", "op": "matmul", "seed": 0,
                             "a": operand("randn:2x3", "A"), "b": operand(str(path), "B")})
    assert spec.result_shape == (2, 4)
