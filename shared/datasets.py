"""Datasets: a training job's rows (`x`, and `y` as float targets or class ids), read from a file, an array pair
or a bundled name, checked whole, and kept as one content-addressed blob (safetensors, named by its SHA-256).

The producer reads and checks a dataset before anything is enqueued, and stores its blob once however many jobs
use it (streamed from the arrays: never a second copy of them; in chunks beyond one Redis value); a job's spec
holds only its reference (`Dataset.ref`). A worker fetches the blob by that hash once per job start and checks the
hash before it trusts a byte. Nothing here imports torch, and nothing ever unpickles.
"""

from __future__ import annotations

import functools
import hashlib
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared import defaults, tensorfile
from shared.errors import BadInput, DecodeError
from shared.streamed import Streamed
from shared.vocab import Bundled

SUFFIXES = (".npz", ".safetensors")
KEYS = ("x", "y")


@dataclass(frozen=True)
class Dataset:
    """Rows checked whole: `x` (N, inputs) float32; `y` (N, outputs) float32 targets, or (N,) int64 class ids."""

    x: np.ndarray
    y: np.ndarray
    name: str  # what the user named: a file's name, or a bundled dataset's

    @property
    def streamed(self) -> Streamed:
        """Its blob (safetensors `x`, `y`), made from the arrays as it is sent: the header, then their own bytes.
        safetensors' own layout with no metadata, so equal rows give equal bytes (and hash)."""
        return tensorfile.of_arrays({"x": self.x, "y": self.y})

    @property
    def blob(self) -> bytes:
        """Its blob whole (a small one; tests)."""
        return self.streamed.joined()

    @property
    def classes(self) -> int | None:
        """The number of classes when `y` holds class ids (their largest + 1), else None."""
        return int(self.y.max()) + 1 if self.y.ndim == 1 else None

    @property
    def outputs(self) -> int:
        return self.classes if self.y.ndim == 1 else int(self.y.shape[1])  # type: ignore[return-value]

    @functools.cached_property  # noqa: B019 - one hash per dataset, of all its bytes
    def sha256(self) -> str:
        return self.streamed.sha256()

    def ref(self) -> dict[str, Any]:
        """What a job's spec holds of it (shared/specs.py's DataRef)."""
        return {"sha256": self.sha256, "name": self.name, "rows": int(self.x.shape[0]),
                "inputs": int(self.x.shape[1]), "outputs": self.outputs, "classes": self.classes}


def checked(x: Any, y: Any, name: str, label: str = "data") -> Dataset:
    """The dataset of arrays `x` and `y` (numpy arrays, torch tensors or nested lists), or a one-line BadInput
    saying what is wrong with them."""
    x, y = _array(x, f"{label}: x"), _array(y, f"{label}: y")
    if x.ndim != 2:
        raise BadInput(f"{label}: x must be (rows, inputs), not of shape {_fmt(x.shape)}")
    if y.ndim not in (1, 2):
        raise BadInput(f"{label}: y must be (rows, outputs) targets or (rows,) class ids, not of shape {_fmt(y.shape)}")
    if y.shape[0] != x.shape[0]:
        raise BadInput(f"{label}: x has {x.shape[0]:,} rows but y has {y.shape[0]:,}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise BadInput(f"{label}: x of shape {_fmt(x.shape)} holds too little: at least 2 rows of 1 input")
    for what, a in (("x", x), ("y", y)):
        if a.size > defaults.MAX_DATASET_ELEMENTS:
            raise BadInput(f"{label}: {what} has {a.size:,} elements, over the limit of "
                           f"{defaults.MAX_DATASET_ELEMENTS:,} (TENSORQ_MAX_DATASET_ELEMENTS)")
    if not np.isfinite(x).all():
        raise BadInput(f"{label}: x holds nan or inf (row {_first_bad_row(x)})")
    if y.dtype.kind in "iu" and y.ndim == 1:
        if y.min() < 0:
            raise BadInput(f"{label}: y's class ids must be 0 or more (row {int(np.argmin(y))} has {int(y.min())})")
        if y.max() >= defaults.MAX_LAYER_SIZE:
            raise BadInput(f"{label}: y's class id {int(y.max())} is out of range (at most "
                           f"{defaults.MAX_LAYER_SIZE - 1}: one output per class)")
        if y.max() < 1:
            raise BadInput(f"{label}: y's class ids name one class only: a classifier needs at least 2")
        y = y.astype(np.int64)
    else:
        if not np.isfinite(y).all():
            raise BadInput(f"{label}: y holds nan or inf (row {_first_bad_row(y)})")
        y = (y if y.ndim == 2 else y[:, None]).astype(np.float32)  # (N,) floats are one target per row
    return Dataset(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y), name)


def load_file(path: str | Path, label: str = "--data") -> Dataset:
    """A dataset from `.npz` (arrays `x`, `y`; never pickled ones) or `.safetensors` (tensors `x`, `y`)."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in SUFFIXES:
        raise BadInput(f"{label}: {path.name}: use a .npz file (arrays x, y) or a .safetensors file (tensors x, y)")
    if not path.is_file():
        raise BadInput(f"{label}: no such file: {path}")
    names, arrays = _read(path, label)
    missing = [k for k in KEYS if k not in names]
    if missing:
        raise BadInput(f"{label}: {path.name} has no array {' or '.join(missing)} (it has: "
                       f"{', '.join(sorted(names)) or 'nothing'}; tensorq reads x and y)")
    return checked(arrays["x"], arrays["y"], path.name, f"{label}: {path.name}")


def _read(path: Path, label: str) -> tuple[list[str], Mapping[str, np.ndarray]]:
    """(the names the file holds, its x and y): arrays beside them are never read."""
    try:
        if path.suffix.lower() == ".npz":
            if not zipfile.is_zipfile(path):  # else numpy would take it for a pickle, and refuse it as one
                raise BadInput(f"{label}: cannot read {path.name}: not a .npz file (numpy.savez writes one)")
            with np.load(path, allow_pickle=False) as npz:
                return list(npz.files), {k: npz[k] for k in npz.files if k in KEYS}
        from safetensors.numpy import load

        arrays = load(path.read_bytes())
        return list(arrays), arrays
    except BadInput:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():  # numpy's refusal of an object array
            raise BadInput(f"{label}: {path.name} holds pickled (object) arrays, which tensorq never loads: save "
                           "numeric arrays") from None
        raise BadInput(f"{label}: cannot read {path.name}: {_first_line(e)}") from None
    except Exception as e:  # zipfile, safetensors and OS errors alike: not a dataset file
        raise BadInput(f"{label}: cannot read {path.name}: {_first_line(e)}") from None


def _digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BadInput("--dataset digits needs scikit-learn where jobs are submitted "
                       "(pip install 'tensorq[datasets]'); workers do not") from None
    digits = load_digits()  # bundled with scikit-learn: no download
    return checked(digits.data, digits.target, "digits", "--dataset digits")


# Bundled datasets by name (shared/vocab.py Bundled): a new one is a word there and its reader here.
NAMED: dict[Bundled, Callable[[], Dataset]] = {
    Bundled.DIGITS: _digits,
}


def named(name: str) -> Dataset:
    if name not in Bundled.values():
        raise BadInput(f"dataset: unknown dataset {name!r} (known: {', '.join(Bundled.values())}; or give a "
                       "file as data)")
    return NAMED[Bundled(name)]()


def of(value: Any, label: str = "data") -> Dataset:
    """What a user passes as `data`: a path (str or Path) or an (x, y) pair of arrays."""
    if isinstance(value, (str, Path)):
        return load_file(value, label)
    if isinstance(value, Mapping) and set(KEYS) <= set(value):
        return checked(value["x"], value["y"], "arrays", label)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return checked(value[0], value[1], "arrays", label)
    raise BadInput(f"{label}: give a .npz or .safetensors file, or an (x, y) pair of arrays")


def from_blob(blob: bytes | bytearray, sha256: str) -> tuple[np.ndarray, np.ndarray]:
    """A stored dataset's (x, y), over the blob's own bytes (no copy), after checking they are the ones its hash
    names (DecodeError if not)."""
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise DecodeError(f"dataset {sha256[:12]}: the stored bytes do not match their hash")
    arrays = tensorfile.arrays(blob)
    if set(arrays) != set(KEYS):
        raise DecodeError(f"dataset {sha256[:12]}: holds {', '.join(sorted(arrays))}, not x and y")
    return arrays["x"], arrays["y"]



def _array(value: Any, label: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        value = value.float().numpy() if str(value.dtype) == "torch.bfloat16" else value.numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise BadInput(f"{label}: not a rectangular array of numbers") from e
    if array.dtype.kind == "b" or array.dtype.kind not in "iuf":
        raise BadInput(f"{label}: holds {array.dtype} values; tensorq reads numbers (floats, or integer class ids)")
    return array


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _first_bad_row(a: np.ndarray) -> int:
    bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
    return int(np.flatnonzero(bad)[0])


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def resolve(entry: Mapping[str, Any], base_dir: Path | None = None, where: str = "data"
            ) -> tuple[dict[str, Any], Dataset | None]:
    """A training entry whose `data` is a file or an (x, y) pair, or whose `dataset` names a bundled one ->
    (the entry holding the dataset's reference instead, the dataset whose blob must reach the broker). An entry
    without either, or whose `data` is already a reference (a rerun's), comes back as it was, with None. A
    relative path is read from `base_dir` (a job file's folder)."""
    given, name = entry.get("data"), entry.get("dataset")
    if given is None and name is None or isinstance(given, Mapping) and "sha256" in given:
        return {k: v for k, v in entry.items() if k != "dataset" or v is not None}, None
    if given is not None and name is not None:
        raise BadInput(f"{where}: give either data (a file, or x and y) or dataset (a name), not both")
    if given is not None and isinstance(given, (str, Path)) and base_dir is not None:
        path = Path(given).expanduser()
        given = path if path.is_absolute() else base_dir / path
    dataset = named(str(name)) if name is not None else of(given, where)
    rest = {k: v for k, v in entry.items() if k not in ("data", "dataset")}
    return {**rest, "data": dataset.ref()}, dataset
