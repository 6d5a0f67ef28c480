"""The job function's context as pure logic (worker/functions.py, no Redis): reports batched into evenly spaced
stream entries, best and last tracked each way, checkpoints that keep an optimizer's state without pickle, and
Stop raised where the contract says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.errors import BadInput
from shared.streamed import whole
from worker.functions import JobContext, Stop

CPU = torch.device("cpu")


class Sink:
    def __init__(self, ok: bool = True) -> None:
        self.entries: list[tuple[str, int, int, list[float]]] = []
        self.ok = ok

    def __call__(self, name: str, first: int, stride: int, values: np.ndarray) -> bool:
        self.entries.append((name, first, stride, values.tolist()))
        return self.ok


def context(sink: Sink, **kw) -> JobContext:
    return JobContext("j1", {"lr": 0.1}, 7, CPU, sink, **kw)


def test_reports_are_batched_into_entries_of_one_stride() -> None:
    sink = Sink()
    ctx = context(sink, flush_reports=10_000, flush_interval_s=3600)
    for step in range(5):
        ctx.report(step, loss=float(step))
    for step in (10, 20, 30):
        ctx.report(step, loss=float(step), acc=torch.tensor(step / 100))
    ctx.report(30, loss=-1.0)  # a step again: a point of its own
    assert sink.entries == []  # nothing leaves before a flush
    ctx.flush()
    assert [e for e in sink.entries if e[0] == "loss"] == [
        ("loss", 0, 1, [0.0, 1.0, 2.0, 3.0, 4.0]), ("loss", 10, 10, [10.0, 20.0, 30.0]), ("loss", 30, 1, [-1.0])]
    [(name, first, stride, values)] = [e for e in sink.entries if e[0] == "acc"]
    assert (first, stride) == (10, 10) and values == pytest.approx([0.1, 0.2, 0.3])
    metrics = ctx.summary_metrics()
    assert metrics["loss"] == {"last": -1.0, "best": -1.0, "best_iteration": 30}
    # `acc` is not a metric tensorq knows (shared/metric_names.py): lower is better for it, as for a loss
    assert metrics["acc"]["best_iteration"] == 10 and metrics["acc"]["best"] == pytest.approx(0.1)


def test_known_accuracy_metrics_are_best_when_highest() -> None:
    ctx = context(Sink(), flush_reports=10_000, flush_interval_s=3600)
    for step, value in enumerate([0.5, 0.9, 0.7]):
        ctx.report(step, val_accuracy=value, loss=1 - value)
    ctx.flush()
    metrics = ctx.summary_metrics()
    assert metrics["val_accuracy"] == {"last": 0.7, "best": 0.9, "best_iteration": 1}
    assert metrics["loss"]["best_iteration"] == 1 and metrics["loss"]["best"] == pytest.approx(0.1)


def test_a_full_batch_flushes_by_itself() -> None:
    sink = Sink()
    ctx = context(sink, flush_reports=4, flush_interval_s=3600)
    for step in range(9):
        ctx.report(step, loss=1.0)
    assert [(first, len(values)) for _, first, _, values in sink.entries] == [(0, 4), (4, 4)]


def test_report_raises_stop_with_the_reason_and_keeps_what_came_before() -> None:
    sink, reasons = Sink(), iter([None, None, "cancel"])
    ctx = context(sink, stop=lambda: next(reasons), flush_reports=10_000, flush_interval_s=3600)
    ctx.report(0, loss=1.0)
    ctx.report(1, loss=2.0)
    with pytest.raises(Stop) as stopped:
        ctx.report(2, loss=3.0)
    assert stopped.value.reason == "cancel" and not isinstance(stopped.value, Exception)
    assert sink.entries == [("loss", 0, 1, [1.0, 2.0])]


def test_a_lost_lease_stops_the_function_at_its_next_flush() -> None:
    ctx = context(Sink(ok=False), flush_reports=1, flush_interval_s=3600)
    with pytest.raises(Stop) as stopped:
        ctx.report(0, loss=1.0)
    assert stopped.value.reason == "lease lost"


def test_a_checkpoint_keeps_model_optimizer_and_rng_without_pickle() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    saved: list[bytes] = []
    # written as the store writes it: at once (the blob streams the state's own tensors)
    ctx = context(Sink(), save_checkpoint=lambda blob: saved.append(whole(blob)) or True)
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "note": ("a", 1, math.inf, None), "epoch": 3}
    ctx.checkpoint(5, state)
    after = torch.rand(3)  # what the RNG gives next, from the checkpoint's state
    assert b"pickle" not in saved[0] and saved[0][8:9] == b"{"  # a safetensors header, not a pickle stream

    resumed = context(Sink(), saved=saved[0])
    step, back = resumed.restore()
    assert step == 5 and resumed.restored_step == 5
    assert torch.equal(torch.rand(3), after)
    assert back["epoch"] == 3 and back["note"] == ("a", 1, math.inf, None)
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-2)
    fresh.load_state_dict(back["opt"])  # int keys and the param groups' lists came back as they were
    assert set(back["opt"]["state"]) == {0, 1}
    for k, v in model.state_dict().items():
        assert torch.equal(back["model"][k], v)


def test_what_a_checkpoint_cannot_keep_is_one_line() -> None:
    ctx = context(Sink(), save_checkpoint=lambda blob: True)
    with pytest.raises(BadInput, match=r"cannot keep the object at state\['f'\]"):
        ctx.checkpoint(1, {"f": object()})


def test_a_fresh_start_restores_nothing() -> None:
    assert context(Sink()).restore() is None
