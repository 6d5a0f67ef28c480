"""The example package's job functions (examples/jobs, installed in the test environment) on the real job
context, in this process and without Redis: a run stopped after a checkpoint and resumed from it reports what
the uninterrupted run did from there on, every metric; their params models; and their modules import without
torch, as a producer that only validates params imports them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from shared import functions
from shared.errors import BadInput
from shared.streamed import Blob, whole
from worker.functions import JobContext, Stop

CPU = torch.device("cpu")


class Recorder:
    """The context's sink and checkpoint store: every reported point by metric, and the last checkpoint."""

    def __init__(self) -> None:
        self.points: dict[str, list[tuple[int, float]]] = {}
        self.saved: bytes | None = None

    def sink(self, name: str, first: int, stride: int, values: np.ndarray) -> bool:
        self.points.setdefault(name, []).extend((first + i * stride, float(v)) for i, v in enumerate(values))
        return True

    def save(self, blob: Blob) -> bool:
        self.saved = whole(blob)  # written as the store writes it: at once (the blob streams the state's own tensors)
        return True


def run(name: str, params: dict, seed: int, saved: bytes | None = None, stop_after: int | None = None
        ) -> tuple[Recorder, dict | None, JobContext]:
    """`name` called as a worker calls it (params checked, torch seeded first); with `stop_after`, stopped as a
    cancel would stop it at the first report after that step."""
    fn = functions.load(name)
    recorder = Recorder()
    ctx: JobContext

    def stop() -> str | None:
        return "cancel" if stop_after is not None and (ctx.last_step or 0) >= stop_after else None

    ctx = JobContext("job", functions.checked_params(fn, params, name), seed, CPU, recorder.sink, stop, saved,
                     recorder.save)
    torch.manual_seed(seed)
    try:
        returned = fn(ctx)
    except Stop:
        return recorder, None, ctx
    ctx.flush()
    return recorder, returned, ctx


@pytest.mark.parametrize(("name", "params"), [
    ("regress", {"steps": 400, "checkpoint_every": 50}),
    ("digits", {"steps": 120, "eval_every": 20, "checkpoint_every": 40, "hidden": 16}),
    ("digits", {"steps": 120, "eval_every": 20, "checkpoint_every": 40, "hidden": 16, "optimizer": "sgd", "lr": 0.1}),
])
def test_a_resumed_run_reports_what_the_uninterrupted_one_did(name: str, params: dict) -> None:
    whole, summary, ctx = run(name, params, seed=5)
    steps = params["steps"]
    assert ctx.total == steps and [s for s, _ in whole.points["loss"]] == list(range(steps))
    assert summary is not None and summary["final_loss"] == pytest.approx(whole.points["loss"][-1][1])

    every = params["checkpoint_every"]
    cut, _, _ = run(name, params, seed=5, stop_after=2 * every + every // 2)  # past its second checkpoint
    assert cut.saved is not None
    resumed, again, ctx = run(name, params, seed=5, saved=cut.saved)
    assert ctx.restored_step == 2 * every
    for metric, points in whole.points.items():
        assert resumed.points[metric] == [p for p in points if p[0] >= 2 * every], metric
    assert again == summary


def test_digits_reports_held_out_accuracy_every_eval_and_at_the_end() -> None:
    recorder, summary, _ = run("digits", {"steps": 130, "eval_every": 50, "hidden": 16}, seed=0)
    for metric in ("accuracy", "val_accuracy", "val_loss"):
        assert [s for s, _ in recorder.points[metric]] == [49, 99, 129], metric
    assert summary is not None and 0.5 < summary["val_accuracy"] <= 1.0
    assert summary["val_accuracy"] == pytest.approx(recorder.points["val_accuracy"][-1][1])


def test_the_params_models_fill_defaults_and_refuse_bad_values() -> None:
    regress = functions.load("regress")
    assert functions.checked_params(regress, {"steps": 3}, "regress") == {
        "steps": 3, "lr": 1e-2, "hidden": 32, "checkpoint_every": 100}
    for bad, fragment in (({"steps": 0}, "steps"), ({"lr": "fast"}, "lr"), ({"hiden": 8}, "unknown parameter")):
        with pytest.raises(BadInput, match=fragment):
            functions.checked_params(regress, bad, "regress")
    with pytest.raises(BadInput, match="optimizer"):
        functions.checked_params(functions.load("digits"), {"optimizer": "lbfgs"}, "digits")


def test_the_function_modules_import_without_torch() -> None:
    """The producer imports a function's module to check its params: a laptop that only submits needs no torch."""
    code = "import sys, tqexamples.regress, tqexamples.digits; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
