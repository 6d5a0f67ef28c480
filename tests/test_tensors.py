"""shared/tensors.py: the wire codec, torch.tensor's reading of literals, and safe tensor files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared import tensors
from shared.errors import BadInput, DecodeError, TensorqError


def _write_marker(path: str) -> None:
    """What the booby-trapped pickle below runs if anything ever unpickles it."""
    Path(path).write_text("unpickled!")


class Booby:
    """An object whose unpickling leaves a marker file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (str(self.marker),))


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


# --- encode / decode -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(tensors.WIRE_DTYPES))
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda dt: np.arange(24).astype(dt).reshape(2, 3, 4), id="3d"),
        pytest.param(lambda dt: np.array(7, dtype=dt), id="0d"),
        pytest.param(lambda dt: np.zeros((0, 3), dtype=dt), id="empty"),
        pytest.param(lambda dt: np.arange(24).astype(dt).reshape(4, 6)[:, ::2], id="strided"),
        pytest.param(lambda dt: np.arange(12).astype(dt).reshape(3, 4).T, id="transposed"),
    ],
)
def test_encode_decode_round_trip(name, make):
    """Given an array of a wire dtype, When encoded, sent as JSON and decoded, Then it comes back equal."""
    array = make(tensors.WIRE_DTYPES[name])
    wire = json.loads(json.dumps(tensors.encode(array)))
    assert wire["dtype"] == name
    assert wire["shape"] == list(array.shape)
    back = tensors.decode(wire)
    assert_same(back, array)
    assert back.flags.writeable


def test_encode_accepts_native_byte_order():
    array = np.ones(3, dtype=np.dtype("float32").newbyteorder("="))
    assert tensors.encode(array)["dtype"] == "float32"


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.complex64, np.int8])
def test_encode_refuses_other_dtypes(dtype):
    with pytest.raises(BadInput, match="unsupported dtype"):
        tensors.encode(np.zeros(2, dtype=dtype))


def _wire(**changes):
    wire = {"dtype": "float32", "shape": [2], "data": base64.b64encode(b"\0" * 8).decode()}
    wire.update(changes)
    return {k: v for k, v in wire.items() if v is not _DROP}


_DROP = object()

MALFORMED = [
    pytest.param(_wire(data="not base64!"), id="bad-base64"),
    pytest.param(_wire(data="AAAA="), id="bad-padding"),
    pytest.param(_wire(data="é"), id="non-ascii"),
    pytest.param(_wire(data=base64.b64encode(b"\0" * 7).decode()), id="too-few-bytes"),
    pytest.param(_wire(data=base64.b64encode(b"\0" * 12).decode()), id="too-many-bytes"),
    pytest.param(_wire(dtype="bfloat16"), id="unknown-dtype"),
    pytest.param(_wire(dtype=["float32"]), id="unhashable-dtype"),
    pytest.param(_wire(dtype=_DROP), id="missing-dtype"),
    pytest.param(_wire(shape=_DROP), id="missing-shape"),
    pytest.param(_wire(data=_DROP), id="missing-data"),
    pytest.param(_wire(shape=[-2]), id="negative-dim"),
    pytest.param(_wire(shape=[-1, -2]), id="negatives-multiplying-to-2"),
    pytest.param(_wire(shape=["x"]), id="non-numeric-dim"),
    pytest.param(_wire(shape=None), id="shape-null"),
    pytest.param(_wire(shape=[None]), id="dim-null"),
    pytest.param(_wire(shape=[float("nan")]), id="dim-nan"),
    pytest.param(_wire(shape=[float("inf")], data=""), id="dim-inf"),
    pytest.param(_wire(shape=[0, 10**20], data=""), id="dim-too-large"),
    pytest.param(_wire(shape=[0] * 70, data=""), id="too-many-dims"),
    pytest.param(_wire(data=123), id="data-not-text"),
    pytest.param([], id="a-list"),
    pytest.param("tensor", id="a-string"),
    pytest.param(None, id="null"),
]


@pytest.mark.parametrize("wire", MALFORMED)
def test_decode_malformed_raises_decode_error(wire):
    """Given a malformed wire form, When decoded, Then DecodeError (a BadInput) and nothing else."""
    with pytest.raises(DecodeError, match="^malformed tensor"):
        tensors.decode(wire)


def test_decode_error_is_bad_input():
    assert issubclass(DecodeError, BadInput)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
wire_like = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(list(tensors.WIRE_DTYPES)) | json_values,
        "shape": st.lists(st.integers(-3, 10**20) | json_scalars, max_size=70) | json_values,
        "data": st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()) | json_values,
    },
)


@settings(max_examples=500, deadline=None)
@given(wire=wire_like | json_values)
@example(wire={"dtype": "float32", "shape": [float("inf")], "data": ""})  # found by a longer run
def test_decode_fuzz_raises_only_tensorq_errors(wire):
    try:
        tensors.decode(wire)
    except TensorqError:
        pass


# --- from_literal ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    [3, -2.5, [1, 2, 3], [1, 2.0], [[1.5, 2], [3, 4]], [[[0]]], [1e-3, -1e3], [2**62], 0.1],
)
def test_from_literal_follows_torch_tensor(literal):
    """Given a literal, When read, Then dtype and values are what torch.tensor makes of it."""
    want = torch.tensor(literal)
    got = tensors.from_literal(literal)
    assert str(got.dtype) == str(want.dtype).removeprefix("torch.")
    assert got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got, want.numpy())


@pytest.mark.parametrize(
    ("literal", "why"),
    [
        ([[1, 2], [3]], "rectangular"),
        ([[1, 2], 3], "rectangular"),
        ("abc", "rectangular"),
        (["1", "2"], "rectangular"),
        ([1, None], "rectangular"),
        (None, "rectangular"),
        ({"a": 1}, "rectangular"),
        ([1j], "rectangular"),
        ([2**64], "int64 range"),
        (True, "booleans"),
        ([True, False], "booleans"),
        ([], "empty"),
        ([[]], "empty"),
    ],
)
def test_from_literal_refuses(literal, why):
    with pytest.raises(BadInput, match=f"^X: .*{why}"):
        tensors.from_literal(literal, "X")


# --- files -----------------------------------------------------------------------------------------

SAMPLES = [
    pytest.param(np.arange(6, dtype=np.float32).reshape(2, 3), id="float32"),
    pytest.param(np.arange(6, dtype=np.int64).reshape(3, 2) - 3, id="int64"),
    pytest.param(np.linspace(0, 1, 5), id="float64"),
    pytest.param(np.arange(4, dtype=np.int32), id="int32"),
    pytest.param(np.array([1.5, -2], dtype=np.float16), id="float16"),
]


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
@pytest.mark.parametrize("array", SAMPLES)
def test_save_load_round_trip_binary(tmp_path, suffix, array):
    path = tmp_path / f"t{suffix}"
    tensors.save_file(array, path)
    assert_same(tensors.load_file(path), array)


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(np.arange(6, dtype=np.float32).reshape(2, 3), id="float32"),
        pytest.param(np.arange(6, dtype=np.int64).reshape(3, 2), id="int64"),
    ],
)
def test_save_load_round_trip_json(tmp_path, array):
    """Given a tensor saved as .json (as `result -o x.json` does), When loaded back, Then it is the same."""
    path = tmp_path / "t.json"
    tensors.save_file(array, path)
    assert_same(tensors.load_file(path), array)


def test_load_json_nested_list(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("[[1, 2], [3, 4.5]]")
    assert_same(tensors.load_file(path), np.array([[1, 2], [3, 4.5]], dtype=np.float32))


def test_load_0d_safetensors(tmp_path):
    """Given a scalar (e.g. a 1-D @ 1-D result) saved as .safetensors, When loaded, Then it is still 0-d."""
    path = tmp_path / "s.safetensors"
    tensors.save_file(np.array(3.0, dtype=np.float32), path)
    assert_same(tensors.load_file(path), np.array(3.0, dtype=np.float32))


@pytest.mark.parametrize("array", [*SAMPLES, pytest.param(np.array(2.5, np.float32), id="0d")])
def test_safetensors_bytes_round_trip(array):
    """The worker stores results this way; a scalar result must come back a scalar."""
    assert_same(tensors.load_safetensors(tensors.safetensors_bytes({"result": array}))["result"], array)


def test_safetensors_bytes_non_contiguous():
    array = np.arange(12, dtype=np.float32).reshape(3, 4).T
    assert_same(tensors.load_safetensors(tensors.safetensors_bytes({"r": array}))["r"], array)


@pytest.mark.parametrize(
    "value",
    [
        {"dtype": "float32", "shape": [3], "data": [1, 2]},
        {"dtype": "bfloat16", "shape": [1], "data": [1]},
        {"dtype": "float32", "shape": [1]},
        {"dtype": "int64", "shape": [1], "data": [2**70]},
        {"dtype": "float32", "shape": [2], "data": [[1], 2]},
    ],
)
def test_from_json_refuses_bad_objects(value):
    with pytest.raises(BadInput, match=r"^A: "):
        tensors.from_json(value, "A")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.int32, torch.float16])
def test_load_pt_tensor(tmp_path, dtype):
    t = torch.arange(6).reshape(2, 3).to(dtype)
    path = tmp_path / "t.pt"
    torch.save(t, path)
    assert_same(tensors.load_file(path), t.numpy())


def test_load_pt_tensor_that_requires_grad(tmp_path):
    path = tmp_path / "t.pt"
    torch.save(torch.ones(2, 2, requires_grad=True), path)
    assert_same(tensors.load_file(path), np.ones((2, 2), dtype=np.float32))


def test_load_pt_dict_is_refused(tmp_path):
    path = tmp_path / "d.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(BadInput, match=r"^A: .*holds a dict, not a tensor"):
        tensors.load_file(path, "A")


def test_load_pt_never_unpickles_arbitrary_objects(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save(Booby(marker), path)
    with pytest.raises(BadInput):
        tensors.load_file(path, "A")
    assert not marker.exists()


def test_pickled_npy_is_refused_and_never_unpickled(tmp_path):
    """Given an object array whose unpickling writes a marker, When loaded, Then BadInput and no marker."""
    marker = tmp_path / "marker"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([Booby(marker)], dtype=object), allow_pickle=True)

    with pytest.raises(BadInput, match=r"^A: cannot read"):
        tensors.load_file(path, "A")
    assert not marker.exists()

    # The trap is live: an unsafe load does run it, so the assertion above proves something.
    np.load(path, allow_pickle=True)
    assert marker.exists()


@pytest.fixture
def two_tensor_file(tmp_path) -> Path:
    path = tmp_path / "w.safetensors"
    path.write_bytes(tensors.safetensors_bytes({"w1": np.ones((2, 3), np.float32), "b1": np.arange(3)}))
    return path


def test_safetensors_name_selects_one(two_tensor_file):
    assert_same(tensors.load_file(Path(f"{two_tensor_file}:w1")), np.ones((2, 3), np.float32))
    assert_same(tensors.load_file(Path(f"{two_tensor_file}:b1")), np.arange(3))


def test_safetensors_with_several_tensors_needs_a_name(two_tensor_file):
    with pytest.raises(BadInput, match=r"^B: .*holds 2 tensors; name one as .*:NAME"):
        tensors.load_file(two_tensor_file, "B")


def test_safetensors_unknown_name(two_tensor_file):
    with pytest.raises(BadInput, match=r"has no tensor named 'w9' \(it has b1, w1\)"):
        tensors.load_file(Path(f"{two_tensor_file}:w9"))


@pytest.mark.parametrize("name", ["nope.npy", "nope.safetensors", "nope.pt", "nope.json", "nope.safetensors:w"])
def test_missing_file(tmp_path, name):
    with pytest.raises(BadInput, match=r"^A: no such file: "):
        tensors.load_file(tmp_path / name, "A")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        tensors.load_file(tmp_path)


@pytest.mark.parametrize(
    ("name", "content"),
    [("t.npy", b"not numpy"), ("t.safetensors", b"garbage"), ("t.pt", b"garbage"), ("t.json", b"{oops")],
)
def test_corrupt_files_are_bad_input(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput, match=r"^A: "):
        tensors.load_file(path, "A")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1,2")
    with pytest.raises(BadInput, match="unsupported file type .csv"):
        tensors.load_file(path)


@pytest.mark.parametrize("name", ["t.csv", "noext"])
def test_save_file_refuses_other_suffixes(tmp_path, name):
    with pytest.raises(BadInput, match="cannot write"):
        tensors.save_file(np.ones(2, np.float32), tmp_path / name)


def test_save_file_writes_a_pt_that_loads_with_weights_only(tmp_path):
    array = np.arange(6, dtype=np.float64).reshape(2, 3)
    tensors.save_file(array, tmp_path / "t.pt")
    back = torch.load(tmp_path / "t.pt", weights_only=True)
    assert back.dtype == torch.float64 and back.tolist() == array.tolist()
    assert np.array_equal(tensors.load_file(tmp_path / "t.pt"), array)  # and reads back as an operand


def test_load_safetensors_corrupt_blob_is_decode_error():
    with pytest.raises(DecodeError, match="corrupt safetensors"):
        tensors.load_safetensors(b"\x00" * 16)


def test_to_literal():
    assert tensors.to_literal(np.array([[1, 2]], dtype=np.int32)) == {
        "dtype": "int32", "shape": [1, 2], "data": [[1, 2]]
    }
