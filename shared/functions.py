"""Job functions: a user's own training functions, named by entry points in the group `tensorq.jobs` of the
environment a process runs in. A worker offers the ones its own environment registers (and runs nothing
else: a message names a function, never code or an import path); the producer asks the same registry, where
a function is installed there too, to check its params before anything is enqueued.

Light: importlib.metadata only; a function's module is imported when it is first loaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from shared.errors import BadInput

GROUP = "tensorq.jobs"
NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")  # it becomes part of a queue name (shared/protocol.py)
FUNCTION_QUEUE = ".fn."  # a run job's queue: <base>.fn.<name>, consumed only by workers offering <name>

log = logging.getLogger(__name__)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise BadInput(f"function {name!r}: expected a lowercase letter, then at most 39 lowercase letters, digits, "
                       "'_' or '-' (an entry point's name in the group tensorq.jobs)")
    return name


@cache
def offered() -> dict[str, EntryPoint]:
    """This environment's job functions by name (read once per process); a name that cannot be a queue's part
    is left out, with a warning."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        if NAME.fullmatch(point.name):
            found[point.name] = point
        else:
            log.warning("job function %r (%s) is not offered: its name must match %s", point.name, point.value,
                        NAME.pattern)
    return found


def queue(base: str, name: str) -> str:
    return f"{base}{FUNCTION_QUEUE}{name}"


def queues(bases: list[str]) -> list[str]:
    """The queues a worker consumes for the functions it offers, beside its base queues."""
    return [queue(b, name) for b in bases for name in sorted(offered())]


def named_in(queue_name: str) -> str | None:
    """The function a run job's queue is for (`cpu.fn.regress.high` -> `regress`), None for another queue."""
    if FUNCTION_QUEUE not in queue_name:
        return None
    rest = queue_name.split(FUNCTION_QUEUE, 1)[1]
    for level in (".high", ".low"):
        rest = rest.removesuffix(level)
    return rest


def load(name: str) -> Callable[..., Any]:
    """The function itself; BadInput when this environment does not offer it, or it will not import."""
    point = offered().get(name)
    if point is None:
        raise BadInput(f"this environment offers no job function {name!r} (it offers: "
                       f"{', '.join(sorted(offered())) or 'none'}; entry points in the group {GROUP})")
    try:
        fn = point.load()
    except Exception as e:
        raise BadInput(f"job function {name!r} ({point.value}) does not import: {type(e).__name__}: "
                       f"{_first_line(e)}") from None
    if not callable(fn):
        raise BadInput(f"job function {name!r} ({point.value}) is not callable")
    return fn  # type: ignore[no-any-return]


def checked_params(fn: Callable[..., Any], params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """`params` as the function's own pydantic model (its `params` attribute) reads them, defaults filled; as
    given when it declares none. A mismatch is one BadInput line naming the parameter."""
    model = getattr(fn, "params", None)
    if model is None or not (isinstance(model, type) and hasattr(model, "model_validate")):
        return dict(params)
    from pydantic import ValidationError

    try:
        return model.model_validate(dict(params)).model_dump(mode="json")  # type: ignore[no-any-return]
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown parameter"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise BadInput(f"{name}: --param {where}: {message}{more}") from None


def check_before_enqueue(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Where the function is installed beside the producer, its params are checked now; else as given (the
    worker checks them again either way)."""
    if name not in offered():
        return dict(params)
    return checked_params(load(name), params, name)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
