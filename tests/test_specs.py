"""shared/specs.py: job specs are validated whole, and every problem is one BadInput line naming its field."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import defaults, specs, tensors
from shared.errors import BadInput


def data(array: np.ndarray) -> dict:
    return {"source": "data", **tensors.encode(array)}


def randn(*shape: int) -> dict:
    return {"source": "randn", "shape": list(shape)}


def op_spec(op: str = "add", a: dict | None = None, b: dict | None = None, **extra) -> dict:
    return {"kind": "op", "op": op, "a": a or randn(2, 3), "b": b or randn(2, 3), "seed": 1, **extra}


def bad(spec: object) -> str:
    """The one-line message parse_spec gives for `spec`."""
    with pytest.raises(BadInput) as info:
        specs.parse_spec(spec)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- TrainSpec -------------------------------------------------------------------------------------


def test_train_defaults():
    spec = specs.parse_spec({"kind": "train"})
    assert isinstance(spec, specs.TrainSpec)
    assert (spec.batch_size, spec.input_size, spec.hidden_size, spec.output_size) == (64, 1000, 100, 10)
    assert spec.lr == 1e-6
    assert (spec.iterations, spec.seed) == (500, 0)
    assert (spec.activation, spec.loss, spec.grad) == ("relu", "sse", "autograd")
    assert (spec.dtype, spec.device) == ("float32", "auto")


def test_train_accepts_its_choices():
    spec = specs.parse_spec({"kind": "train", "activation": "sigmoid", "loss": "ce", "grad": "manual",
                             "dtype": "bfloat16", "device": "cuda", "lr": 0.5, "iterations": 3, "seed": 7})
    assert (spec.activation, spec.loss, spec.grad, spec.dtype, spec.device) == (
        "sigmoid", "ce", "manual", "bfloat16", "cuda")


@pytest.mark.parametrize(
    ("fields", "prefix"),
    [
        ({"hidden_size": 0}, "hidden-size:"),
        ({"batch_size": -1}, "batch-size:"),
        ({"input_size": defaults.MAX_LAYER_SIZE + 1}, "input-size:"),
        ({"output_size": 0}, "output-size:"),
        ({"lr": 0}, "lr:"),
        ({"lr": -0.1}, "lr:"),
        ({"lr": math.nan}, "lr:"),
        ({"lr": math.inf}, "lr:"),
        ({"lr": "x"}, "lr:"),
        ({"lr": True}, "lr:"),
        ({"lr": None}, "lr:"),
        ({"iterations": 0}, "iterations:"),
        ({"iterations": defaults.MAX_ITERATIONS + 1}, "iterations:"),
        ({"iterations": 1.5}, "iterations:"),
        ({"iterations": "many"}, "iterations:"),
        ({"seed": -1}, "seed:"),
        ({"seed": 2**63}, "seed:"),
        ({"activation": "tanh"}, "activation:"),
        ({"loss": "mse"}, "loss:"),
        ({"grad": "numeric"}, "grad:"),
        ({"dtype": "float16"}, "dtype:"),
        ({"device": "tpu"}, "device:"),
        ({"hiden_size": 5}, "hiden-size: unknown field"),
    ],
)
def test_train_limits_name_the_field(fields, prefix):
    """Given one bad train field, When parsed, Then BadInput's one line starts with that field's name."""
    assert bad({"kind": "train", **fields}).startswith(prefix)


@pytest.mark.parametrize("field", ["batch_size", "hidden_size", "iterations", "seed"])
def test_train_int_fields_refuse_booleans(field):
    """Given `true` for a count in a job file, Then it is refused (as for lr), not read as 1."""
    assert bad({"kind": "train", field: True}).startswith(field.replace("_", "-") + ":")


def test_train_ce_needs_two_classes():
    message = bad({"kind": "train", "loss": "ce", "output_size": 1})
    assert "output-size" in message and "ce" in message


def test_train_total_elements_limit():
    message = bad({"kind": "train", "batch_size": 65536, "input_size": 65536})
    assert "over the limit of 1,073,741,824" in message


def test_train_several_errors_are_counted_on_one_line():
    assert bad({"kind": "train", "hidden_size": 0, "lr": 0}).endswith("(and 1 more)")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "kind: must be 'op' or 'train' or 'run'"),
        ({"kind": "predict"}, "kind: must be 'op' or 'train' or 'run'"),
        ([], "a job spec must be an object"),
        (None, "a job spec must be an object"),
        ("train", "a job spec must be an object"),
    ],
)
def test_not_a_spec(spec, message):
    assert bad(spec) == message


# --- TensorOpSpec ----------------------------------------------------------------------------------


def test_op_spec_with_data_and_randn():
    spec = specs.parse_spec(op_spec("mul", data(np.ones((2, 1), np.float32)), randn(3)))
    assert isinstance(spec, specs.TensorOpSpec)
    assert spec.result_shape == (2, 3)
    assert spec.operand_dtypes == ("float32", "float32")
    assert spec.device == "auto"


def test_op_spec_without_randn_needs_no_seed():
    spec = specs.parse_spec({"kind": "op", "op": "add", "a": data(np.ones(2, np.int64)),
                             "b": data(np.ones(2, np.int64))})
    assert spec.seed is None


def test_randn_without_seed_fails():
    spec = op_spec()
    del spec["seed"]
    assert bad(spec) == "randn operands need a seed"


def test_shape_mismatch_message():
    assert bad(op_spec("add", randn(2, 3), randn(4))) == "add: cannot broadcast 2x3 with 4"


def test_matmul_shape_mismatch_message():
    assert bad(op_spec("matmul", randn(2, 3), randn(2, 2))) == "matmul: cannot multiply 2x3 by 2x2"


def test_matmul_promotes_mixed_dtypes_as_torch_promotes_elementwise_ops():
    """Given int64 and float32 operands (the README's `[[1, 2], [3, 4]]` against randn), matmul is accepted
    and its result has torch's promoted dtype, float32 (not numpy's float64)."""
    spec = specs.parse_spec(op_spec("matmul", data(np.ones((2, 2), np.float32)), data(np.ones((2, 2), np.int64))))
    assert spec.operand_dtypes == ("float32", "int64")
    assert spec.result_dtype == "float32"


def test_matmul_dtype_cast_resolves_the_mismatch():
    spec = specs.parse_spec(op_spec("matmul", randn(2, 2), data(np.ones((2, 2), np.int64)), dtype="float64"))
    assert spec.operand_dtypes == ("float64", "float64")


def test_elementwise_ops_may_mix_dtypes():
    spec = specs.parse_spec(op_spec("add", randn(2), data(np.ones(2, np.int32))))
    assert spec.operand_dtypes == ("float32", "int32")


@pytest.mark.parametrize("side", ["a", "b"])
def test_randn_operand_element_limit(side):
    too_big = randn(defaults.MAX_TENSOR_ELEMENTS + 1)
    message = bad(op_spec(**{side: too_big}))
    assert message.startswith(f"{side}: ") and "over the limit" in message


def test_data_operand_element_limit():
    huge = {"source": "data", "dtype": "float32", "shape": [defaults.MAX_TENSOR_ELEMENTS + 1], "data": ""}
    message = bad(op_spec(a=huge))
    assert message.startswith("a: ") and "over the limit" in message


def test_result_element_limit():
    """Given operands within the limit whose broadcast is not, Then the result is named."""
    side = 4096
    message = bad(op_spec("add", randn(side, 1), randn(1, side)))
    assert message.startswith("result of shape 4096x4096 has 16,777,216 elements, over the limit")


@pytest.mark.parametrize(
    ("a", "prefix"),
    [
        ({"source": "data", "dtype": "float32", "shape": [2], "data": "AAAA"}, "a: 3 bytes do not hold"),
        ({"source": "data", "dtype": "float32", "shape": [1], "data": "!!"}, "a: data is not valid base64"),
        ({"source": "data", "dtype": "uint8", "shape": [1], "data": "AA=="}, "a.dtype:"),
        ({"source": "data", "dtype": "float32", "shape": [-1], "data": ""}, "a.shape.0:"),
        ({"source": "randn", "shape": []}, "a.shape:"),
        ({"source": "randn", "shape": [2, 0]}, "a.shape.1:"),
        ({"source": "randn", "shape": [1] * 9}, "a.shape:"),
    ],
)
def test_bad_operand_names_the_operand(a, prefix):
    assert bad(op_spec(a=a)).startswith(prefix)


@pytest.mark.parametrize(
    "a",
    [
        pytest.param({"source": "bogus", "shape": [2]}, id="unknown-source"),
        pytest.param({"shape": [2]}, id="no-source"),
    ],
)
def test_operand_source_errors_name_the_operand(a):
    """Given an operand with a bad `source`, Then the message blames `a`, not the spec's `kind`."""
    message = bad(op_spec(a=a))
    assert message.startswith(("a:", "a.source:")), message
    assert "kind" not in message


@pytest.mark.parametrize(("field", "value"), [("op", "pow"), ("device", "tpu"), ("dtype", "bfloat16"), ("seed", -1)])
def test_op_fields(field, value):
    assert bad(op_spec(**{field: value})).startswith(f"{field}:")


# --- describe --------------------------------------------------------------------------------------


def test_describe_train():
    line = specs.describe(specs.parse_spec({"kind": "train", "lr": 0.01}))
    assert line == ("train 64x1000->100->10 relu/sse autograd float32 lr=0.01 iterations=500 seed=0 "
                    "device=auto")


def test_describe_op_is_short_even_for_a_large_tensor():
    """Given a 1,000,000-element data operand, When described, Then one short line without its data."""
    big = data(np.zeros((1000, 1000), np.float32))
    line = specs.describe(specs.parse_spec(op_spec("matmul", big, randn(1000, 2))))
    assert line == "matmul 1000x1000:float32 1000x2:float32 -> 1000x2 device=auto"
    assert len(line) < 200 and "\n" not in line


def test_describe_scalar_result_and_cast():
    spec = specs.parse_spec(op_spec("matmul", randn(3), randn(3), dtype="float64", device="cpu"))
    assert specs.describe(spec) == "matmul 3:float64 3:float64 -> scalar device=cpu"


# --- fuzz ------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
TRAIN_FIELDS = list(specs.TrainSpec.model_fields)
OP_FIELDS = list(specs.TensorOpSpec.model_fields)
operands = st.fixed_dictionaries(
    {"source": st.sampled_from(["data", "randn"]) | json_values},
    optional={
        "shape": st.lists(st.integers(-2, 10**12), max_size=9) | json_values,
        "dtype": st.sampled_from(list(tensors.WIRE_DTYPES)) | json_values,
        "data": st.sampled_from(["", "AAAA", "AAAAAAAAAAA=", "!"]) | json_values,
    },
)
spec_like = (
    st.builds(lambda fields: {"kind": "train", **fields},
              st.dictionaries(st.sampled_from(TRAIN_FIELDS) | st.text(max_size=4), json_values, max_size=5))
    | st.builds(lambda fields: {"kind": "op", **fields},
                st.dictionaries(st.sampled_from(OP_FIELDS), json_values | operands, max_size=6))
    | json_values
)


@settings(max_examples=400, deadline=None)
@given(spec=spec_like)
def test_parse_spec_fuzz_raises_only_bad_input(spec):
    try:
        specs.parse_spec(spec)
    except BadInput as e:
        assert "\n" not in str(e)
