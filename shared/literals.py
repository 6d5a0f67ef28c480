"""Tensor literals as a PyTorch user types them: Python's own syntax for numbers, lists and tuples.

    [[1., 2.], [3., 4.]]      1e-3      -1.5      nan      inf      (1, 2)      torch.tensor([[1, 2], [3, 4]])

Nothing is ever evaluated: the text is parsed by `ast` and only numbers, signs, lists, tuples, `nan`/`inf`
and one wrapping `torch.tensor(...)` call are accepted. JSON is a subset of this (but for `NaN` and
`Infinity`, which are accepted too), and is tried first because `json` reads a large literal far faster.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

from shared import defaults

# Names a literal may use for the non-finite floats, as torch and numpy print them (and JSON writes them).
NAMED_FLOATS = {"nan": math.nan, "inf": math.inf, "infinity": math.inf}
# The calls a literal pasted from code may be wrapped in: `torch.tensor(...)`, `tensor(...)`.
WRAPPERS = ("torch.tensor", "tensor")
# A literal is read whole into memory: this many characters per element is generous for any number.
MAX_CHARS_PER_ELEMENT = 40


class LiteralError(ValueError):
    """Raised when text is not a literal of numbers; the message says where and why, in one line."""


def looks_like_literal(text: str) -> bool:
    """Could `text` be meant as a literal (rather than a file name)?"""
    t = text.strip().lower()
    return bool(t) and (t[0] in "[(-+.0123456789" or t.lstrip("+-") in NAMED_FLOATS
                        or any(t.startswith(w + "(") for w in WRAPPERS))


def parse(text: str) -> Any:
    """A number, or nested lists of numbers, from `text`; LiteralError when it is anything else."""
    limit = defaults.MAX_TENSOR_ELEMENTS * MAX_CHARS_PER_ELEMENT
    if len(text) > limit:
        raise LiteralError(f"{len(text):,} characters, too long for a literal of at most "
                           f"{defaults.MAX_TENSOR_ELEMENTS:,} elements (use a .npy or .safetensors file)")
    try:
        return json.loads(text, parse_constant=_json_constant)
    except (ValueError, RecursionError):
        pass  # not JSON: Python's syntax, below
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise LiteralError(f"not a valid literal ({e.msg} at column {e.offset})") from None
    except (RecursionError, MemoryError):
        raise LiteralError("not a valid literal (nested too deeply)") from None
    return _value(_unwrap(tree.body), depth=0)


def _json_constant(name: str) -> float:
    """JSON's NaN, Infinity and -Infinity (which Python's json writes)."""
    value = NAMED_FLOATS[name.lower().lstrip("-")]
    return -value if name.startswith("-") else value


def _unwrap(node: ast.expr) -> ast.expr:
    """`torch.tensor(X)` -> X: a literal pasted from code keeps its call."""
    if isinstance(node, ast.Call) and ast.unparse(node.func) in WRAPPERS:
        if len(node.args) != 1 or node.keywords:
            raise LiteralError("not a valid literal (torch.tensor(...) takes the data alone here: "
                               "give the dtype with --dtype)")
        return node.args[0]
    return node


def _value(node: ast.expr, depth: int) -> Any:
    if depth > defaults.MAX_TENSOR_DIMS:
        raise LiteralError(f"not a valid literal (more than {defaults.MAX_TENSOR_DIMS} dimensions)")
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e, depth + 1) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        number = _value(node.operand, depth)
        if isinstance(number, list):
            raise LiteralError("not a valid literal (a sign before a list)")
        return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value  # refused later with the same message as JSON's true/false
    if isinstance(node, ast.Name) and node.id.lower() in NAMED_FLOATS:
        return NAMED_FLOATS[node.id.lower()]
    if isinstance(node, ast.Attribute) and ast.unparse(node) in ("math.nan", "math.inf", "torch.nan", "torch.inf"):
        return NAMED_FLOATS[node.attr]
    what = ast.unparse(node)
    raise LiteralError(f"not a valid literal ({what[:40]!r} is not a number, list or tuple)")
