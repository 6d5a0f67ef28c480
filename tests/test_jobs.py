"""worker/jobs.py's pure parts, without Celery or Redis: a task message decoded into its spec (anything else in
it is a clear failure), the device a job runs on, and errors told in one line."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import BadInput, JobFailed
from shared.specs import TensorOpSpec, TrainSpec
from worker import jobs
from worker.jobs import decode, readable

TRAIN = {"kind": "train", "iterations": 3, "hidden_size": 4}
OP = {"kind": "op", "op": "add", "a": {"source": "randn", "shape": [2]}, "b": {"source": "randn", "shape": [2]},
      "seed": 1}


def test_a_train_message_decodes_to_its_spec() -> None:
    spec = decode((), {"spec": TRAIN}, "train")
    assert isinstance(spec, TrainSpec) and (spec.iterations, spec.hidden_size) == (3, 4)


def test_an_op_message_decodes_to_its_spec() -> None:
    spec = decode((), {"spec": OP}, "op")
    assert isinstance(spec, TensorOpSpec) and spec.op == "add" and spec.seed == 1


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((TRAIN,), {}, "bad message: 1 positional arguments (tensorq sends only spec=...)"),
    ((TRAIN,), {"spec": TRAIN}, "bad message: 1 positional arguments (tensorq sends only spec=...)"),
    ((), {}, "bad message: no spec"),
    ((), {"spec": TRAIN, "extra": 1, "also": 2}, "bad message: unexpected arguments ['also', 'extra']"),
    ((), {"spec": OP}, "a op spec was sent to the train task"),
])
def test_a_message_tensorq_did_not_send_fails_its_job_saying_why(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(JobFailed) as info:
        decode(args, kwargs, "train")
    assert str(info.value) == message


@pytest.mark.parametrize(("spec", "fragment"), [
    ("rm -rf /", "a job spec must be an object"),
    ({**TRAIN, "evil": True}, "evil: unknown field"),
    ({**TRAIN, "hidden_size": "big"}, "hidden-size:"),
    ({"kind": "nope"}, "kind"),
])
def test_a_spec_that_does_not_validate_is_one_line(spec: Any, fragment: str) -> None:
    with pytest.raises(BadInput) as info:
        decode((), {"spec": spec}, "train")
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("requested", "has_cuda", "device"), [
    ("cpu", False, "cpu"), ("auto", False, "cpu"), ("cpu", True, "cpu"), ("auto", True, "cuda:0"),
    ("cuda", True, "cuda:0"),
])
def test_the_device_a_job_runs_on(monkeypatch: pytest.MonkeyPatch, requested: str, has_cuda: bool,
                                  device: str) -> None:
    monkeypatch.setattr(jobs, "_has_cuda", lambda: has_cuda)
    assert str(jobs.resolve_device(requested)) == device


def test_cuda_on_a_worker_without_one_fails_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "_has_cuda", lambda: False)
    with pytest.raises(JobFailed, match="^the job asks for cuda but this worker has no CUDA device$"):
        jobs.resolve_device("cuda")


@pytest.mark.parametrize(("error", "line"), [
    (BadInput("hidden-size: too big"), "hidden-size: too big"),  # tensorq's own: as it is
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied\n(2x3 and 2x2)"),
     "RuntimeError: mat1 and mat2 shapes cannot be multiplied"),  # torch's: its first line, with its type
    (ZeroDivisionError(), "ZeroDivisionError: ZeroDivisionError"),
])
def test_errors_are_told_in_one_line(error: BaseException, line: str) -> None:
    assert readable(error) == line

