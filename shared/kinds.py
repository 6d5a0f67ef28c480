"""Job kinds as a table: one entry per kind says everything the rest of tensorq asks about a kind (its spec
model, its task, how a worker runs it, how it is told in one line, whether it has curves, what `result`
hands back). A new kind is one entry here, plus its spec (shared/specs.py, joined to `JobSpec`) and its
runner (worker/). Light on purpose: the CLI reads it before pydantic or torch are imported; the spec model
and the runner are named as `module:attribute` and imported only by whoever needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import metric_names
from shared.protocol import TaskName
from shared.vocab import Kind

if TYPE_CHECKING:
    from pydantic import BaseModel

    from shared.streamed import Blob

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class JobKind:
    kind: Kind
    task: TaskName  # the Celery task the producer sends it to, by name
    spec_model: str  # `module:class` of its pydantic spec (which also says how it is described for Flower)
    runner: str  # `module:function` a worker runs: (job_id, spec, device, ctx) -> (summary, artifacts)
    # True: a pure function, run first and committed after in one round trip, no lease (ops take microseconds);
    # False: leased, checkpointed, cancellable, waits out broker outages (worker/jobs.py)
    pure: bool
    result: str  # the artifact `tensorq result` / `Job.result()` reads
    curves: bool  # it records metric series per iteration: history, compare, watch's bars
    one_line: Callable[[Mapping[str, Any]], str]  # a stored spec (a dict), in a line for `list` and `status`
    ended: Callable[[Summary], str]  # what its summary says, in a line for `wait` and `result`
    progress_total: Callable[[Mapping[str, Any]], int]  # units of progress (iterations) a watcher counts to; 0: unknown
    operands: tuple[str, ...] = ()  # spec fields that are tensors, read from literals or files before validation
    marker: str | None = None  # a field only this kind has: a job file's entry naming it is of this kind
    shown_after_wait: bool = False  # `submit --wait` prints its result (a tensor) before its summary

    def model(self) -> type[BaseModel]:
        return _resolve(self.spec_model)  # type: ignore[no-any-return]

    def execute(self) -> Callable[..., tuple[dict[str, Any], dict[str, Blob]]]:
        return _resolve(self.runner)  # type: ignore[no-any-return]


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# --- how each kind tells itself ---------------------------------------------------------------------------

def _shape(operand: Mapping[str, Any]) -> str:
    shape = "x".join(map(str, operand.get("shape", []))) or "scalar"
    return ("randn:" if operand.get("source") == "randn" else "") + shape


def _op_line(spec: Mapping[str, Any]) -> str:
    return f"{spec.get('op')} {_shape(spec.get('a', {}))} {_shape(spec.get('b', {}))}"


def _op_ended(s: Summary) -> str:
    return f"{s.get('op')} -> {s.get('dtype')}{list(s.get('shape', []))}"  # add -> float32[2, 2], as Flower shows it


def _fields_line(spec: Mapping[str, Any]) -> str:
    """Every field that says something (None and flags that are off say nothing); a flag that is on reads as
    the flag."""
    def field(k: str, v: Any) -> str:
        name = k.replace("_", "-")
        return name if v is True else f"{name}={v}"

    return " ".join(field(k, v) for k, v in spec.items() if k != "kind" and v is not None and v is not False)


def _g(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, (int, float)) else "-"


def _train_ended(s: Summary) -> str:
    best = (f"best {_g(s['best_loss'])} at iteration {s.get('best_iteration')}"
            if isinstance(s.get("best_loss"), (int, float)) else "no finite loss")
    told = f"final loss {_g(s.get('final_loss'))} ({best}), {s.get('iterations')} iterations"
    name = metric_names.headline(s)
    if name is None:
        return told
    m = metric_names.summarized(s, name)
    return f"{told}; {name} {_g(m.get('last'))} (best {_g(m.get('best'))} at iteration {m.get('best_iteration')})"


def _run_line(spec: Mapping[str, Any]) -> str:
    params = spec.get("params") or {}
    return " ".join([str(spec.get("function")), *(f"{k}={v}" for k, v in params.items()), f"seed={spec.get('seed')}"])


def _run_ended(s: Summary) -> str:
    """A job function's ending: its headline metric (else the first it reported), as training jobs tell theirs."""
    metrics = s.get("metrics") or {}
    first = metric_names.LOSS if metric_names.LOSS in metrics else next(iter(metrics), None)
    name = metric_names.headline(s) or first
    if name is None:
        return f"{s.get('function')}: reported no metric"
    m = metric_names.summarized(s, name)
    return (f"{s.get('function')}: {name} {_g(m.get('last'))} (best {_g(m.get('best'))} at step "
            f"{m.get('best_iteration')}), {s.get('steps')} steps")


KINDS: dict[Kind, JobKind] = {
    Kind.OP: JobKind(
        kind=Kind.OP, task=TaskName.TENSOR_OP, spec_model="shared.specs:TensorOpSpec",
        runner="worker.jobs:execute_op", pure=True, result="result", curves=False, one_line=_op_line,
        ended=_op_ended, progress_total=lambda spec: 1, operands=("a", "b"), marker="op",
        shown_after_wait=True),
    Kind.TRAIN: JobKind(
        kind=Kind.TRAIN, task=TaskName.TRAIN, spec_model="shared.specs:TrainSpec",
        runner="worker.training:execute_train", pure=False, result="weights", curves=True, one_line=_fields_line,
        ended=_train_ended, progress_total=lambda spec: int(spec.get("iterations") or 1)),
    Kind.RUN: JobKind(
        kind=Kind.RUN, task=TaskName.RUN, spec_model="shared.specs:RunSpec", runner="worker.functions:execute_run",
        pure=False, result="summary", curves=True, one_line=_run_line, ended=_run_ended,
        progress_total=lambda spec: 0,  # known to the function only (ctx.total): `workers` shows it
        marker="function"),
}
DEFAULT_KIND = Kind.TRAIN  # a job file's entry that names neither a kind nor an op


def of(kind: str) -> JobKind:
    """The entry for a kind as stored or sent (a str); KeyError for one this version does not know."""
    return KINDS[Kind(kind)]


def find(kind: object) -> JobKind | None:
    """The entry for whatever a dict says its kind is; None when it names none this version knows."""
    return next((k for k in KINDS.values() if k.kind.value == kind), None)


def has_curves(kind: str) -> bool:
    """Whether jobs of this kind record metric series (a kind this version does not know: no)."""
    entry = find(kind)
    return entry is not None and entry.curves


def by_task(task: str) -> JobKind:
    return next(k for k in KINDS.values() if k.task.value == task)


def entry_kind(entry: Mapping[str, Any]) -> str:
    """A job file entry's kind: as given, else the kind whose own field it names (`op`), else the default."""
    if "kind" in entry:
        return str(entry["kind"])
    return next((k.kind.value for k in KINDS.values() if k.marker is not None and k.marker in entry),
                DEFAULT_KIND.value)
