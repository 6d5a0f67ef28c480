"""Turning what users give as an operand (a literal, `randn:2x2x2`, a file, an array) into a spec part."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from shared import defaults, literals, tensors
from shared.errors import BadInput

RANDN = re.compile(r"randn:(\d+(?:x\d+)*)", re.IGNORECASE)


def operand(value: Any, label: str, dtype: str | None = None) -> dict[str, Any]:
    """The spec's form of one operand: `{"source": "randn", "shape"}` or `{"source": "data", ...wire}`.
    A literal (text or nested lists) given with the job's `dtype` is read straight into that dtype, so a
    float64 job keeps every digit typed; arrays, tensors and files keep their own dtype."""
    if isinstance(value, str):
        return _from_text(value.strip(), label, dtype)
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        try:
            value = value.detach().cpu().numpy()
        except TypeError:  # e.g. bfloat16, which numpy has no type for
            raise BadInput(f"{label}: unsupported dtype {value.dtype} (cast it to float32 first)") from None
    if isinstance(value, np.ndarray):
        return _data(value, label)
    return _data(tensors.from_literal(value, label, dtype), label)


def file_operand(value: Any, label: str, base_dir: Path, dtype: str | None = None) -> dict[str, Any]:
    """An operand in a job file: like `operand`, with file paths relative to the job file's folder."""
    if isinstance(value, str) and looks_like_file(value.strip()) and not Path(value.strip()).is_absolute():
        value = str(base_dir / value.strip())
    return operand(value, label, dtype)


def _from_text(text: str, label: str, dtype: str | None) -> dict[str, Any]:
    if not text:
        raise BadInput(f"{label}: empty operand")
    if m := RANDN.fullmatch(text):
        shape = [int(d) for d in m.group(1).lower().split("x")]
        if any(d == 0 for d in shape) or len(shape) > defaults.MAX_TENSOR_DIMS:
            raise BadInput(f"{label}: randn needs 1 to {defaults.MAX_TENSOR_DIMS} sizes, each at least 1")
        return {"source": "randn", "shape": shape}
    if text.lower().startswith("randn"):
        raise BadInput(f"{label}: expected randn:SHAPE such as randn:2x2x2 (got {text!r})")
    if literals.looks_like_literal(text) and not looks_like_file(text):
        try:
            value = literals.parse(text)
        except literals.LiteralError as e:
            raise BadInput(f"{label}: {e}") from None
        return _data(tensors.from_literal(value, label, dtype), label)
    return _data(tensors.load_file(Path(text).expanduser(), label), label)


def looks_like_file(text: str) -> bool:
    """`./a.npy`, `2024.npy`, `w.safetensors:w1`: a known suffix means a path, even when it starts like a number."""
    base = text.rsplit(":", 1)[0] if ".safetensors:" in text.lower() else text
    return Path(base).suffix.lower() in tensors.FILE_SUFFIXES


def _data(array: np.ndarray, label: str) -> dict[str, Any]:
    if array.size > defaults.MAX_TENSOR_ELEMENTS:
        raise BadInput(f"{label}: {array.size:,} elements, over the limit of {defaults.MAX_TENSOR_ELEMENTS:,}")
    try:
        return {"source": "data", **tensors.encode(array)}
    except BadInput as e:
        raise BadInput(f"{label}: {e}") from None
