"""The tensor codec: dtype + shape + raw little-endian bytes on the wire, and safe file formats on disk.

Nothing here ever unpickles: `.npy` loads with `allow_pickle=False`, `.pt` with `weights_only=True`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from shared.defaults import MAX_TENSOR_DIMS, MAX_TENSOR_ELEMENTS
from shared.errors import BadInput, DecodeError
from shared.shapes import numel

# The dtypes a tensor may have on the wire, by torch's name.
WIRE_DTYPES: dict[str, np.dtype] = {
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
}
FILE_SUFFIXES = (".npy", ".safetensors", ".pt", ".json")


def dtype_name(array: np.ndarray) -> str:
    for name, dt in WIRE_DTYPES.items():
        if array.dtype.newbyteorder("<") == dt:  # big-endian .npy files are fine: encode() swaps the bytes
            return name
    raise BadInput(f"unsupported dtype {array.dtype} (use one of {', '.join(WIRE_DTYPES)})")


def encode(array: np.ndarray) -> dict[str, Any]:
    """A JSON-safe wire form of `array`."""
    name = dtype_name(array)
    data = np.asarray(array, dtype=WIRE_DTYPES[name], order="C").tobytes()
    return {"dtype": name, "shape": list(array.shape), "data": base64.b64encode(data).decode("ascii")}


def decode(wire: dict[str, Any]) -> np.ndarray:
    """The array a wire form describes; a malformed one raises DecodeError, never anything else."""
    try:
        dt = WIRE_DTYPES[wire["dtype"]]
        shape = tuple(int(d) for d in wire["shape"])
        raw = base64.b64decode(wire["data"], validate=True)
    except (KeyError, TypeError, ValueError, OverflowError, binascii.Error) as e:
        raise DecodeError(f"malformed tensor: {e!r}") from e
    if len(shape) > MAX_TENSOR_DIMS or any(d < 0 or d > MAX_TENSOR_ELEMENTS for d in shape):
        raise DecodeError(f"malformed tensor: shape {shape} is outside the limits")
    if len(raw) != numel(shape) * dt.itemsize:
        raise DecodeError(f"malformed tensor: {len(raw)} bytes do not hold {wire['dtype']} of shape {shape}")
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


def from_literal(value: Any, label: str = "tensor", dtype: str | None = None) -> np.ndarray:
    """torch.tensor's reading of a nested list: all integers -> int64, any float -> float32; or, given
    `dtype`, the Python numbers cast straight to it (so `0.1` in float64 is 0.1, never float32's 0.1)."""
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise BadInput(f"{label}: not a rectangular array of numbers") from e
    if array.dtype.kind == "b":
        raise BadInput(f"{label}: booleans are not supported, use numbers")
    if array.dtype.kind not in "if":
        raise BadInput(f"{label}: not a rectangular array of numbers (or an integer out of int64 range)")
    if array.size == 0:
        raise BadInput(f"{label}: empty tensor")
    if array.ndim > MAX_TENSOR_DIMS:
        raise BadInput(f"{label}: {array.ndim} dimensions, more than {MAX_TENSOR_DIMS} dimensions allowed")
    target = WIRE_DTYPES[dtype] if dtype else np.dtype(np.int64 if array.dtype.kind == "i" else np.float32)
    if target.kind == "i":
        _check_fits_integers(array, target, label)
    with np.errstate(over="ignore"):  # 1e39 in float32 is inf, as torch.tensor makes it
        return array.astype(target)


def _check_fits_integers(array: np.ndarray, target: np.dtype, label: str) -> None:
    """torch refuses to make an integer tensor of nan, inf or a value out of the type's range."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadInput(f"{label}: nan and inf cannot be held by {dtype_name(np.empty(0, target))}")
    info = np.iinfo(target)
    if array.min() < info.min or array.max() > info.max:
        raise BadInput(f"{label}: a value is out of the range of {dtype_name(np.empty(0, target))}")


def from_json(value: Any, label: str = "tensor", dtype: str | None = None) -> np.ndarray:
    """A bare literal, or the `{"dtype", "shape", "data"}` object that `result --json` and `-o x.json` write
    (where a non-finite number is null)."""
    if not isinstance(value, dict):
        return from_literal(value, label, dtype)
    try:
        array = np.array(_nulls_as_nan(value["data"]), dtype=WIRE_DTYPES[value["dtype"]])
        shape = tuple(int(d) for d in value["shape"])
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise BadInput(f"{label}: expected a nested list or {{\"dtype\", \"shape\", \"data\"}}") from e
    if array.shape != shape:
        raise BadInput(f"{label}: data has shape {array.shape}, not the declared {shape}")
    return array


def to_literal(array: np.ndarray) -> dict[str, Any]:
    """`{"dtype", "shape", "data"}` with data as nested lists (the `result --json` contract); a non-finite
    number is None, so the JSON written is strict."""
    data = array.tolist()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        data = _nan_as_null(data)
    return {"dtype": dtype_name(array), "shape": list(array.shape), "data": data}


def _nan_as_null(data: Any) -> Any:
    if isinstance(data, list):
        return [_nan_as_null(v) for v in data]
    return data if math.isfinite(data) else None


def _nulls_as_nan(data: Any) -> Any:
    """JSON's null back to nan: the strict form of a non-finite number (inf is written null too, and comes
    back as nan: strict JSON has no way to tell them apart)."""
    if isinstance(data, list):
        return [_nulls_as_nan(v) for v in data]
    return math.nan if data is None else data


def load_file(path: Path, label: str = "tensor") -> np.ndarray:
    """One tensor from `.npy`, `.safetensors` (exactly one tensor, or `file.safetensors:name`), `.pt` or `.json`."""
    name = None
    if ":" in path.name and path.name.rsplit(":", 1)[0].endswith(".safetensors"):
        base, name = str(path).rsplit(":", 1)
        path = Path(base)
    if not path.is_file():
        raise BadInput(f"{label}: no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array: np.ndarray = np.load(path, allow_pickle=False)  # a .npy file is one array (an .npz is not)
            return array
        if suffix == ".json":
            return from_json(json.loads(path.read_text()), label)
        if suffix == ".safetensors":
            return _pick(_load_safetensors(path.read_bytes()), name, path, label)
        if suffix == ".pt":
            return _load_pt(path, label)
    except BadInput:
        raise
    except Exception as e:  # each loader has its own failure types; all mean "not a tensor file"
        raise BadInput(f"{label}: cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    raise BadInput(f"{label}: unsupported file type {suffix or '(none)'} (use {', '.join(FILE_SUFFIXES)})")


def save_file(array: np.ndarray, path: Path) -> None:
    if not path.parent.is_dir():
        raise BadInput(f"-o: no such folder: {path.parent}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, array, allow_pickle=False)
    elif suffix == ".safetensors":
        from safetensors.numpy import save_file as save_st

        save_st({"result": np.asarray(array, order="C")}, str(path))
    elif suffix == ".json":
        path.write_text(json.dumps(to_literal(array)) + "\n")
    elif suffix == ".pt":
        save_pt(array, path)
    else:
        raise BadInput(f"cannot write {suffix or 'a file without a suffix'}: use .npy, .safetensors, .json or .pt")


def save_pt(arrays: np.ndarray | dict[str, np.ndarray], path: Path) -> None:
    """torch.save of a tensor, or of a dict of them (a training job's weights): plain tensors only, so
    `torch.load(path, weights_only=True)` reads it back."""
    try:
        import torch
    except ImportError as e:
        raise BadInput("writing .pt files needs torch (pip install 'tensorq[worker]'); or use .safetensors") from e
    if not path.parent.is_dir():
        raise BadInput(f"-o: no such folder: {path.parent}")

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    torch.save({k: tensor(v) for k, v in arrays.items()} if isinstance(arrays, dict) else tensor(arrays), path)


def safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.asarray(v, order="C") for k, v in arrays.items()})


def safetensors_metadata(blob: bytes | bytearray) -> dict[str, str]:
    """The `__metadata__` strings of a safetensors blob (its header: 8 bytes of length, then JSON)."""
    try:
        size = int.from_bytes(blob[:8], "little")
        return json.loads(blob[8 : 8 + size]).get("__metadata__") or {}
    except (ValueError, AttributeError) as e:
        raise DecodeError(f"corrupt safetensors header: {e}") from e


def _load_safetensors(blob: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    return load(blob)


def load_safetensors(blob: bytes | bytearray) -> dict[str, np.ndarray]:
    """The arrays in a safetensors blob, writable, over the blob's own buffer when it is a bytearray (a large one,
    read in chunks: no second copy of it), else over one copy; a corrupt blob raises DecodeError."""
    from shared import tensorfile

    return tensorfile.arrays(blob if isinstance(blob, bytearray) else bytearray(blob))


def _pick(arrays: dict[str, np.ndarray], name: str | None, path: Path, label: str) -> np.ndarray:
    if name is not None:
        if name not in arrays:
            raise BadInput(f"{label}: {path} has no tensor named {name!r} (it has {', '.join(sorted(arrays))})")
        return arrays[name]
    if len(arrays) != 1:
        raise BadInput(f"{label}: {path} holds {len(arrays)} tensors; name one as {path}:NAME")
    return next(iter(arrays.values()))


def _load_pt(path: Path, label: str) -> np.ndarray:
    try:
        import torch
    except ImportError as e:
        raise BadInput(f"{label}: reading .pt files needs torch (pip install 'tensorq[worker]')") from e
    with warnings.catch_warnings():  # torch warns at length about pickles; the one-line error says it all
        warnings.simplefilter("ignore")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise BadInput(f"{label}: {path} holds pickled Python objects, which tensorq never loads "
                           "(save a tensor with torch.save(tensor, path), or use .npy/.safetensors)") from None
    if not isinstance(obj, torch.Tensor):
        raise BadInput(f"{label}: {path} holds a {type(obj).__name__}, not a tensor")
    return obj.detach().numpy()
