"""Loss recording with non-finite losses: the best is over finite losses only, a diverged run stops at its
first inf/nan with the history ending there exactly once, and --allow-nonfinite runs on as the note does."""

from __future__ import annotations

import math

import pytest
import torch

from shared.specs import TrainSpec
from tests.note_loop import note_loop
from worker import loop, recorders

CPU = torch.device("cpu")
INF, NAN = float("inf"), float("nan")


def recorder(kind: str, batches: list, size: int, stop: bool) -> recorders.Recorder:
    """The CPU's recorder, or the GPU's (a device buffer, here made on the CPU), starting at iteration 10."""
    args = ("loss", lambda name, first, step, v: batches.append((first, v.tolist())), size, torch.float32, 10, 1)
    return recorders.HostRecorder(*args, stop) if kind == "host" else recorders.DeviceRecorder(CPU, *args, stop)


def feed(losses: recorders.Recorder, values: list[float]) -> None:
    for v in values:
        if losses.record(torch.tensor(v)):
            losses.flush()
            if losses.diverged:
                return
    losses.flush()


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["host", "device buffer"])
def test_the_best_loss_is_over_finite_losses_only(kind: str) -> None:
    """Given a batch holding nan and inf beside finite losses (recording on through them), the best is the
    smallest finite one and its iteration; today's argmin would have picked the nan."""
    batches: list = []
    losses = recorder(kind, batches, 8, stop=False)
    feed(losses, [7.0, NAN, 2.5, INF, 3.0, NAN])
    assert (losses.best, losses.best_at) == (2.5, 12)
    assert math.isnan(losses.last) and losses.diverged is None
    assert same([x for _, v in batches for x in v], [7.0, NAN, 2.5, INF, 3.0, NAN])


@pytest.mark.parametrize("kind", ["host", "device buffer"])
def test_a_batch_of_only_nan_keeps_the_earlier_best(kind: str) -> None:
    batches: list = []
    losses = recorder(kind, batches, 2, stop=False)
    feed(losses, [4.0, 5.0, NAN, NAN])
    assert (losses.best, losses.best_at) == (4.0, 10)


def test_the_host_recorder_flushes_at_the_first_nonfinite_loss() -> None:
    """Given the CPU's recorder, a non-finite loss asks for a flush at once (not at the batch's end), and the
    flush hands over the batch through that loss and marks where the run diverged."""
    batches: list = []
    losses = recorder("host", batches, 100, stop=True)
    assert not losses.record(torch.tensor(3.0))
    assert losses.record(torch.tensor(INF))
    losses.flush()
    assert batches == [(10, [3.0, INF])] and losses.diverged == (11, INF)


def test_the_device_recorder_drops_what_came_after_the_first_nonfinite_loss() -> None:
    """Given the GPU's recorder, which sees its losses only at a flush, the batch is cut after the first
    non-finite loss: the history ends there, exactly once."""
    batches: list = []
    losses = recorder("device buffer", batches, 6, stop=True)
    for v in [3.0, 2.0, NAN, INF, 1.0]:
        assert not losses.record(torch.tensor(v))
    losses.flush()
    assert len(batches) == 1 and batches[0][0] == 10 and same(batches[0][1], [3.0, 2.0, NAN])
    assert losses.diverged is not None and losses.diverged[0] == 12 and math.isnan(losses.diverged[1])
    assert (losses.best, losses.best_at, losses.first) == (2.0, 11, 13)


def diverging(**kw: object) -> TrainSpec:
    return TrainSpec(iterations=50, lr=1e-5, seed=0, **kw)  # the note's network: inf at iteration 4


def test_a_diverged_run_stops_at_its_first_nonfinite_loss() -> None:
    """Given the note's network at lr=1e-5, training stops with `diverged: loss became inf at iteration N`
    right after iteration N; its history is the note's loop's up to N, once; its best is finite; its
    weights are those after N + 1 updates (the diverged ones), as the note's loop has them."""
    reference, _, _ = note_loop(seed=0, learning_rate=1e-5, iterations=50)
    n = next(k for k, v in enumerate(reference) if not math.isfinite(v))
    seen: list[tuple[int, list[float]]] = []
    with pytest.raises(loop.Stopped) as stopped:
        loop.train(diverging(), CPU, lambda name, first, step, v: seen.append((first, v.tolist())))
    e = stopped.value
    assert str(e) == f"diverged: loss became {reference[n]} at iteration {n}" and e.iteration == n
    history = [x for _, v in seen for x in v]
    assert same(history, reference[: n + 1])
    assert [first for first, _ in seen] == [0]
    finite = [v for v in reference[: n + 1] if math.isfinite(v)]
    assert e.result.best_loss == min(finite) and e.result.best_iteration == reference.index(min(finite))
    assert e.result.recorded == n + 1 and e.result.weights_at == n + 1
    _, w1, w2 = note_loop(seed=0, learning_rate=1e-5, iterations=n + 1)
    for got, want in ((e.result.w1, w1), (e.result.w2, w2)):  # the diverged weights: inf and nan among them
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("path", [{"grad": "manual"}, {"fast": True}])
def test_every_path_stops_alike(path: dict) -> None:
    with pytest.raises(loop.Stopped) as stopped:
        loop.train(diverging(**path), CPU, lambda name, first, step, v: None)
    assert stopped.value.reason.startswith("diverged: loss became ")


def test_allow_nonfinite_runs_on_as_the_note_does() -> None:
    """Given allow_nonfinite, every iteration runs and is recorded, inf and nan included, equal to the note's
    loop value for value; the best is still the finite minimum."""
    reference, w1, w2 = note_loop(seed=0, learning_rate=1e-5, iterations=50)
    got: list[float] = []
    result = loop.train(diverging(allow_nonfinite=True), CPU, lambda name, first, step, v: got.extend(v.tolist()))
    assert same(got, reference) and any(math.isnan(v) for v in got)
    assert result.best_loss == min(v for v in reference if math.isfinite(v))
    assert result.recorded == result.weights_at == 50
    torch.testing.assert_close(result.w1, w1, rtol=0, atol=0, equal_nan=True)


def test_a_stop_on_request_carries_the_weights_of_its_last_iteration() -> None:
    """Given a cancel after 9 iterations, the Stopped error holds the weights after those 9 updates (what
    the job keeps as its weights artifact), equal to the note's loop run for 9 iterations."""
    seen: list[int] = []
    with pytest.raises(loop.Stopped) as stopped:
        loop.train(TrainSpec(iterations=100, seed=0), CPU,
                   lambda name, first, step, v: seen.extend(range(first, first + len(v))),
                    should_stop=lambda: "cancel" if len(seen) >= 9 else None, flush_iterations=3,
                   flush_interval_s=3600)
    e = stopped.value
    _, w1, w2 = note_loop(seed=0, iterations=9)
    assert e.iteration == 9 and e.result.weights_at == 9 and e.result.recorded == 9
    assert torch.equal(e.result.w1, w1) and torch.equal(e.result.w2, w2)


def test_on_a_gpu_the_run_stops_at_the_flush_that_finds_it(monkeypatch) -> None:
    """Given the GPU's recorder (here on the CPU: the same code reads the same buffer), a run diverging at
    iteration N stops at the next flush (every 20 iterations here): the history still ends at N, exactly
    once, and `weights_at` says the weights are those of the flush."""
    reference, _, _ = note_loop(seed=0, learning_rate=1e-5, iterations=50)
    n = next(k for k, v in enumerate(reference) if not math.isfinite(v))
    monkeypatch.setattr(recorders.Recorder, "for_device",
                        lambda name, sink, size, dtype, device, first, step, stop, maximize:
                        recorders.DeviceRecorder(CPU, name, sink, size, dtype, first, step, stop, maximize))
    seen: list[tuple[int, list[float]]] = []
    with pytest.raises(loop.Stopped) as stopped:
        loop.train(diverging(), CPU, lambda name, first, step, v: seen.append((first, v.tolist())),
                   flush_iterations=20, flush_interval_s=3600)
    e = stopped.value
    assert e.iteration == n < 20 and str(e) == f"diverged: loss became {reference[n]} at iteration {n}"
    assert [first for first, _ in seen] == [0] and same(seen[0][1], reference[: n + 1])
    assert e.result.recorded == n + 1 and e.result.weights_at == 20
