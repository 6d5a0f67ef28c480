"""torch tensors as safetensors blobs, streamed both ways: `blob` makes the header, then each tensor's bytes as a
memoryview of the tensor itself (a GPU tensor is copied to the host one tensor at a time, when its turn comes), so
the file is never built whole; `load` makes tensors over the buffer a blob was read into, without another copy.

The bytes are a standard safetensors file, as `safetensors.torch.save` writes it (tests/test_tensor_blobs.py)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from shared import tensorfile
from shared.errors import DecodeError
from shared.streamed import Part, Streamed

# torch's dtype for each safetensors dtype (shared/tensorfile.py DTYPES), and back.
TORCH: dict[str, torch.dtype] = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3": torch.float8_e4m3fn, "I16": torch.int16, "U16": torch.uint16, "F16": torch.float16,
    "BF16": torch.bfloat16, "I32": torch.int32, "U32": torch.uint32, "F32": torch.float32, "C64": torch.complex64,
    "F64": torch.float64, "I64": torch.int64, "U64": torch.uint64,
}
NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in TORCH.items()}


def blob(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Streamed:
    """The tensors (on any device) as a safetensors blob whose parts are made as they are written."""
    named = {name: t.detach() for name, t in tensors.items()}
    try:
        head, order = tensorfile.header({n: (NAMES[t.dtype], tuple(t.shape)) for n, t in named.items()}, metadata)
    except KeyError as e:
        raise DecodeError(f"safetensors has no dtype for {e.args[0]}") from None

    def parts() -> Iterator[Part]:
        yield head
        for name in order:
            yield host_bytes(named[name])  # the previous tensor's host copy (if any) is dropped by now

    return Streamed(len(head) + sum(t.numel() * t.element_size() for t in named.values()), parts)


def host_bytes(t: torch.Tensor) -> memoryview:
    """A tensor's bytes in memory order, as flat unsigned bytes: the tensor itself when it is a contiguous CPU
    tensor, else one host copy of it."""
    host = t.to("cpu").contiguous()  # on a GPU: this tensor's copy, and only this one's
    if host.numel() == 0:
        return memoryview(b"")
    return host.reshape(-1).view(torch.uint8).numpy().data  # a memoryview of the tensor's own bytes


def load(buffer: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors blob, the tensors over the buffer's own memory. A read-only buffer
    (bytes: a small blob, one Redis value) is copied once first: torch must be able to write to its tensors (a
    resumed job trains its weights in place)."""
    if isinstance(buffer, bytes):
        buffer = bytearray(buffer)
    entries, metadata = tensorfile.parse(buffer)
    tensors = {}
    with warnings.catch_warnings():  # torch warns of any buffer it cannot see is writable; a bytearray is
        warnings.simplefilter("ignore", UserWarning)
        for name, e in entries.items():
            dtype = TORCH[e.dtype]
            if e.end == e.begin:
                tensors[name] = torch.empty(e.shape, dtype=dtype)
            else:
                count = (e.end - e.begin) // tensorfile.DTYPES[e.dtype][0]
                tensors[name] = torch.frombuffer(buffer, dtype=dtype, count=count, offset=e.begin).reshape(e.shape)
    return tensors, metadata
