"""The errors a caller of the Python client catches: importable from `producer`, the very classes of
shared/errors.py, one hierarchy."""

from __future__ import annotations

import producer
from shared.errors import BadInput as SharedBadInput


def test_the_errors_a_caller_catches_come_from_producer() -> None:
    from producer import BadInput, BrokerUnreachable, JobFailed, JobNotFound, TensorqError

    assert BadInput is SharedBadInput and issubclass(JobNotFound, BadInput)
    assert all(issubclass(e, TensorqError) for e in (BadInput, BrokerUnreachable, JobFailed, JobNotFound))
    assert set(producer.__all__) >= {"Client", "Job", "BadInput", "JobNotFound", "BrokerUnreachable", "TensorqError"}
