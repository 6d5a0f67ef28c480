"""Every vocabulary tensorq speaks, once: ops, dtypes, devices, activations, losses, gradients, kinds, states,
priorities and stop reasons. The CLI's choices, the specs, the job file's schema and the worker's tables all
derive from these enums. Light on purpose: `tensorq --help` imports it, so no pydantic and no torch here.
"""

from __future__ import annotations

from enum import Enum


class Word(str, Enum):
    """A str Enum that prints as its value (`f"{Op.ADD}"` is `add`, on every Python we support)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(str(member.value) for member in cls)


class Op(Word):
    """The tensor ops, with torch semantics (worker/ops.py's table has one function per member)."""

    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    MATMUL = "matmul"


class OpDtype(Word):
    """What an op's operands may be cast to (and what literals are read into)."""

    FLOAT16 = "float16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT32 = "int32"
    INT64 = "int64"


class TrainDtype(Word):
    """What a training job computes in (bfloat16 weights are stored widened to float32)."""

    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BFLOAT16 = "bfloat16"


class Device(Word):
    AUTO = "auto"  # this worker's GPU when it has one, else the CPU
    CPU = "cpu"
    CUDA = "cuda"


class Activation(Word):
    RELU = "relu"  # clamp(min=0), as the note writes it
    SIGMOID = "sigmoid"


class Loss(Word):
    SSE = "sse"  # (y_pred - y).pow(2).sum(), the note's
    CE = "ce"  # cross-entropy against argmax(y), summed


class Grad(Word):
    AUTOGRAD = "autograd"
    MANUAL = "manual"  # the hand-derived gradients, no graph


class Bundled(Word):
    """Datasets a training job may name (`--dataset`); shared/datasets.py NAMED says how each is read."""

    DIGITS = "digits"  # scikit-learn's 1,797 8x8 handwritten digits: 64 inputs, 10 classes, no download


class Kind(Word):
    OP = "op"
    TRAIN = "train"
    RUN = "run"  # a user's own job function (shared/functions.py)


class JobState(Word):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class Priority(Word):
    """Each queue comes in three levels, `<queue>.high`, `<queue>`, `<queue>.low`, which workers consume
    strictly in that order (Celery's Redis priority emulation misbehaves: celery/celery#8967)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class StopReason(Word):
    """Why a running job stopped before its end. `timed out` and `diverged` reasons carry a detail after the
    word (`timed out after 2 s`, `diverged: loss became nan`): `StopReason.of` reads the word back."""

    CANCEL = "cancel"  # a user asked: the job ends `cancelled`
    HANDBACK = "handback"  # its worker is stopping: back to its queue, to resume from its checkpoint
    LEASE_LOST = "lease lost"  # another worker took it over: this attempt writes nothing more
    TIMED_OUT = "timed out"  # its spec's timeout passed: `failed`
    DIVERGED = "diverged"  # a loss became inf or nan: `failed`

    @classmethod
    def of(cls, reason: str) -> StopReason:
        for member in cls:
            if reason == member.value or reason.startswith(member.value + " ") or \
                    reason.startswith(member.value + ":"):
                return member
        raise ValueError(f"not a stop reason: {reason!r}")

    @property
    def keeps_what_it_made(self) -> bool:
        """A job stopped for this ends here and keeps its weights and summary (not handed back or taken over)."""
        return self not in (StopReason.HANDBACK, StopReason.LEASE_LOST)


class NodeState(Word):
    """A worker node's state in its heartbeat."""

    STARTING = "starting"  # claimed by the launcher, not yet consuming
    IDLE = "idle"
    RUNNING = "running"  # running the job named in the heartbeat


READY_NODE_STATES = frozenset({NodeState.IDLE.value, NodeState.RUNNING.value})
