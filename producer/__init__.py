"""The client side of tensorq: the `tensorq` CLI and the Python client it is built on.

Nothing here imports torch or worker code; jobs are sent to workers by task name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from producer.client import Client, Job

__all__ = ["Client", "Job"]


def __getattr__(name: str) -> object:
    # Lazy, so `tensorq --help` does not pay for redis and numpy.
    if name in __all__:
        from producer import client

        return getattr(client, name)
    raise AttributeError(name)
