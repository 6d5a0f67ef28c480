"""The client side of tensorq: the `tensorq` CLI and the Python client it is built on.

    from producer import Client, BadInput, JobNotFound

Nothing here imports torch or worker code; jobs are sent to workers by task name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The errors a caller catches: light, so importing them costs nothing.
from shared.errors import BadInput, BrokerUnreachable, JobFailed, JobNotFound, TensorqError

if TYPE_CHECKING:
    from producer.client import Client, UnservedQueueWarning
    from producer.job import Job

__all__ = ["BadInput", "BrokerUnreachable", "Client", "Job", "JobFailed", "JobNotFound", "TensorqError",
           "UnservedQueueWarning"]
_LAZY = ("Client", "Job", "UnservedQueueWarning")


def __getattr__(name: str) -> object:
    # Lazy, so `tensorq --help` does not pay for redis and numpy.
    if name in _LAZY:
        from producer import client, job

        return getattr(job if name == "Job" else client, name)
    raise AttributeError(name)
