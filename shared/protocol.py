"""Names both sides agree on: task names, queues, job kinds and states."""

from __future__ import annotations

from enum import Enum


class TaskName(str, Enum):
    TENSOR_OP = "tensorq.tensor_op"
    TRAIN = "tensorq.train"


class Queue(str, Enum):
    GPU = "gpu"
    CPU = "cpu"


class Kind(str, Enum):
    OP = "op"
    TRAIN = "train"


TASK_FOR_KIND = {Kind.OP: TaskName.TENSOR_OP, Kind.TRAIN: TaskName.TRAIN}


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
