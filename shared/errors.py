"""The errors tensorq raises on purpose; the CLI turns each into one line and an exit code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.streamed import Blob


class TensorqError(Exception):
    """Base of every error tensorq raises on purpose."""

    exit_code = 1


class BadInput(TensorqError, ValueError):
    """Raised when a flag, literal, file, shape or spec is wrong; nothing has been enqueued.

    A ValueError too, so pydantic validators can raise it and have it reported as a field error.
    """

    exit_code = 2


class JobNotFound(BadInput):
    """Raised when a job id is not in the store."""


class DecodeError(BadInput):
    """Raised when a tensor or a message cannot be decoded safely."""


class BrokerUnreachable(TensorqError):
    """Raised when Redis does not answer."""

    exit_code = 3


class JobFailed(TensorqError):
    """Raised by a worker when a job ends in failure; its message is what users see."""


class StackError(TensorqError):
    """Raised when `tensorq up`/`down` cannot start or stop the embedded services."""


class Interrupted(TensorqError):
    """Raised by a running job's loop when it is asked to stop (`reason`: handback, cancel, timeout, ...);
    every loss before `iteration` is stored. A job that ends here keeps `summary` and `artifacts` (name ->
    blob, e.g. its weights so far) when its executor set them."""

    def __init__(self, iteration: int, reason: str) -> None:
        super().__init__(f"{reason} at iteration {iteration}")
        self.iteration = iteration
        self.reason = reason
        self.summary: dict[str, Any] | None = None
        self.artifacts: dict[str, Blob] | None = None


class JobCancelled(TensorqError):
    """Raised by a worker when a running job ends because a user cancelled it."""
