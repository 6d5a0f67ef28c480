"""The tensor ops with torch semantics: one entry per member of shared.vocab.Op (tests/test_vocab.py fails
when the two disagree). Nothing here knows about Celery or Redis."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from shared import tensors
from shared.specs import DataTensor, TensorOpSpec
from shared.vocab import Op, OpDtype

OPS: dict[Op, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.div, Op.MATMUL: torch.matmul}
DTYPES: dict[OpDtype, torch.dtype] = {
    OpDtype.FLOAT16: torch.float16, OpDtype.FLOAT32: torch.float32, OpDtype.FLOAT64: torch.float64,
    OpDtype.INT32: torch.int32, OpDtype.INT64: torch.int64}


def operands(spec: TensorOpSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """a and b on the CPU: decoded from the message, or drawn with randn from the seed (a first, then b)."""
    gen = torch.Generator().manual_seed(spec.seed) if spec.seed is not None else None
    out = []
    for ref in (spec.a, spec.b):
        if isinstance(ref, DataTensor):
            t = torch.from_numpy(tensors.decode(ref.model_dump()))
        else:
            t = torch.randn(*ref.shape, generator=gen)
        out.append(t.to(DTYPES[spec.dtype]) if spec.dtype else t)
    return out[0], out[1]


def run(spec: TensorOpSpec, device: torch.device) -> tuple[torch.Tensor, torch.device]:
    """(result on the CPU, the device it was computed on)."""
    a, b = operands(spec)
    if spec.op is Op.MATMUL and a.dtype != b.dtype:
        # torch.matmul refuses mixed dtypes; a user's `[[1, 2], [3, 4]]` means numbers, not int64, so both
        # are promoted as the element-wise ops promote them (int64 @ float32 -> float32)
        common = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    if device.type == "cuda" and spec.op is Op.MATMUL and not a.is_floating_point():
        device = torch.device("cpu")  # CUDA has no integer matmul; the CPU gives torch's exact answer
    result = OPS[spec.op](a.to(device), b.to(device))
    return result.cpu(), device


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().numpy()
