"""Result shapes of the tensor ops under torch's rules, so a bad shape is caught before enqueue."""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import BadInput
from shared.vocab import Op

Shape = tuple[int, ...]


def fmt(shape: Sequence[int]) -> str:
    """`2x3` for (2, 3); `scalar` for ()."""
    return "x".join(str(d) for d in shape) if shape else "scalar"


def broadcast(a: Sequence[int], b: Sequence[int], op: str) -> Shape:
    """torch's broadcasting: align from the right; each pair of sizes is equal or contains a 1."""
    out: list[int] = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            raise BadInput(f"{op}: cannot broadcast {fmt(a)} with {fmt(b)}")
        out.append(db if da == 1 else da)
    return tuple(reversed(out))


def matmul(a: Sequence[int], b: Sequence[int]) -> Shape:
    """torch.matmul's result shape: 1-D operands are promoted and the added dim removed; batch dims broadcast."""
    if not a or not b:
        raise BadInput("matmul: both operands need at least one dimension")
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        raise BadInput(f"matmul: cannot multiply {fmt(a)} by {fmt(b)}")
    batch = broadcast(a2[:-2], b2[:-2], "matmul")
    out = [*batch, a2[-2], b2[-1]]
    if len(b) == 1:
        out.pop(-1)
    if len(a) == 1:
        out.pop(-1 if len(b) == 1 else -2)
    return tuple(out)


def result_shape(op: str, a: Sequence[int], b: Sequence[int]) -> Shape:
    return matmul(a, b) if op == Op.MATMUL else broadcast(a, b, op)


def numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
