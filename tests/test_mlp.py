"""The network and its loop: manual gradients against autograd, and the reproducibility contract."""

from __future__ import annotations

import pytest
import torch

from shared.specs import TrainSpec
from tests.note_loop import note_loop
from worker import loop, network, recorders

PAIRS = [(a, l) for a in ("relu", "sigmoid") for l in ("sse", "ce")]
CPU = torch.device("cpu")


def small_spec(**kw) -> TrainSpec:
    base = {"batch_size": 8, "input_size": 12, "hidden_size": 6, "output_size": 4, "seed": 3}
    return TrainSpec(**{**base, **kw})


@pytest.mark.parametrize("activation,loss", PAIRS)
def test_manual_gradients_match_autograd_in_float64(activation: str, loss: str) -> None:
    """Given seeded float64 data, when both ways compute (loss, dw1, dw2), they agree to 1e-9 relative."""
    spec = small_spec(activation=activation, loss=loss, dtype="float64")
    data = network.draw(spec, CPU)
    m_loss, m_dw1, m_dw2 = network.manual_grads(data, data.w1, data.w2, activation, loss)
    a_loss, a_dw1, a_dw2 = network.autograd_grads(data, data.w1, data.w2, activation, loss)
    for name, manual, auto in (("loss", m_loss, a_loss), ("dw1", m_dw1, a_dw1), ("dw2", m_dw2, a_dw2)):
        assert auto.abs().max() > 0, f"{name} is all zero: a broken backward could hide"
        rel = ((manual - auto).abs().max() / auto.abs().max()).item()
        assert rel < 1e-9, f"{name}: max relative difference {rel:.3e}"


@pytest.mark.parametrize("activation,loss", PAIRS)
def test_manual_and_autograd_training_agree(activation: str, loss: str) -> None:
    """Given the same spec, a manual-gradient run follows the autograd run's loss curve (float64)."""
    runs = {}
    for grad in ("autograd", "manual"):
        spec = small_spec(activation=activation, loss=loss, grad=grad, dtype="float64", iterations=50, lr=1e-3)
        losses: list[float] = []
        loop.train(spec, CPU, lambda name, first, step, v, out=losses: out.extend(v.tolist()))
        runs[grad] = torch.tensor(losses)
    assert torch.allclose(runs["manual"], runs["autograd"], rtol=1e-9, atol=0)


def test_draw_follows_the_reproducibility_contract() -> None:
    """Given seed S, draw gives exactly torch.manual_seed(S); randn x, y, w1, w2 in that order, float32 CPU."""
    spec = small_spec(seed=11)
    torch.manual_seed(11)
    expected = [torch.randn(8, 12), torch.randn(8, 4), torch.randn(12, 6), torch.randn(6, 4)]
    data = network.draw(spec, CPU)
    for got, want in zip((data.x, data.y, data.w1, data.w2), expected, strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, want)


def test_ce_targets_come_from_y_without_extra_draws() -> None:
    spec = small_spec(loss="ce")
    data = network.draw(spec, CPU)
    assert torch.equal(data.target, data.y.argmax(dim=1))
    assert torch.equal(network.draw(small_spec(loss="sse"), CPU).w2, data.w2)


def test_training_equals_the_note_loop_value_for_value() -> None:
    """Given the note's sizes and seed 0, CPU float32 autograd losses and weights equal the inline loop's."""
    expected_losses, expected_w1, expected_w2 = note_loop(seed=0, iterations=200)
    got: list[float] = []
    result = loop.train(TrainSpec(iterations=200, seed=0), CPU, lambda name, first, step, v: got.extend(v.tolist()))
    assert got == expected_losses
    assert torch.equal(result.w1, expected_w1) and torch.equal(result.w2, expected_w2)
    assert result.final_loss == expected_losses[-1]
    assert result.best_loss == min(expected_losses)


def test_losses_arrive_in_contiguous_batches() -> None:
    """Given a flush every 7 iterations, the sink sees consecutive batches of at most 7 covering every iteration."""
    calls: list[tuple[int, int]] = []
    loop.train(small_spec(iterations=30), CPU, lambda name, first, step, v: calls.append((first, len(v))),
               flush_iterations=7, flush_interval_s=3600)
    assert [n for _, n in calls] == [7, 7, 7, 7, 2]
    assert [f for f, _ in calls] == [0, 7, 14, 21, 28]


@pytest.mark.parametrize("recorder", ["host", "device buffer"])
def test_both_loss_recorders_hand_over_the_same_batches(recorder: str) -> None:
    """Given the same losses, the CPU's recorder (plain reads) and the GPU's (a device buffer, here made on the
    CPU) flush the same batches, in the recorder's dtype, and track the same best and last loss."""
    batches: list[tuple[int, torch.dtype, list[float]]] = []
    args = ("loss", lambda name, first, step, v: batches.append((first, v.dtype, v.tolist())), 2, torch.float32, 10)
    losses = recorders.HostRecorder(*args) if recorder == "host" else recorders.DeviceRecorder(CPU, *args)
    for value in [5.0, 3.25, 4.0, 1.5, 2.0]:
        if losses.record(torch.tensor(value, dtype=torch.bfloat16)):  # widened exactly
            losses.flush()
    losses.flush()
    assert batches == [(10, torch.float32, [5.0, 3.25]), (12, torch.float32, [4.0, 1.5]), (14, torch.float32, [2.0])]
    assert (losses.best, losses.best_at, losses.last) == (1.5, 13, 2.0)


def test_the_cpu_records_losses_on_the_host() -> None:
    assert isinstance(recorders.Recorder.for_device("loss", print, 4, torch.float32, CPU), recorders.HostRecorder)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
@pytest.mark.parametrize("grad", ["autograd", "manual"])
def test_other_dtypes_train_and_lower_the_loss(dtype: str, grad: str) -> None:
    losses: list[float] = []
    result = loop.train(small_spec(dtype=dtype, grad=grad, iterations=40, lr=1e-3), CPU,
                       lambda name, first, step, v: losses.extend(v.tolist()))
    assert len(losses) == 40 and losses[-1] < losses[0]
    assert result.w1.dtype == network.DTYPES[dtype]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_cpu_in_float64() -> None:
    spec = small_spec(dtype="float64", iterations=20, lr=1e-3)
    cpu, gpu = [], []
    loop.train(spec, CPU, lambda name, f, step, v: cpu.extend(v.tolist()))
    loop.train(spec, torch.device("cuda"), lambda name, f, step, v: gpu.extend(v.tolist()))
    assert torch.allclose(torch.tensor(gpu), torch.tensor(cpu), rtol=1e-9)


def clone(r: loop.Resume) -> loop.Resume:
    return loop.Resume(r.iteration, r.w1.clone(), r.w2.clone(), r.best_loss, r.best_iteration, r.last_loss,
                      r.seconds)


def test_a_resumed_run_equals_an_uninterrupted_one() -> None:
    """Given a checkpoint at iteration 40, resuming from it gives the uninterrupted run's losses and weights."""
    spec = TrainSpec(iterations=100, seed=5)
    whole: list[float] = []
    full = loop.train(spec, CPU, lambda name, first, step, v: whole.extend(v.tolist()))
    snaps: list[loop.Resume] = []
    head: list[tuple[int, list[float]]] = []
    loop.train(spec, CPU, lambda name, first, step, v: head.append((first, v.tolist())),
               checkpoint=lambda r: snaps.append(clone(r)), checkpoint_every=40)
    assert [s.iteration for s in snaps] == [40, 80]
    assert [x for first, v in head if first < 40 for x in v] == whole[:40]  # flushed before each checkpoint
    tail: list[float] = []
    resumed = loop.train(spec, CPU, lambda name, first, step, v: tail.extend(v.tolist()), resume=snaps[0])
    assert tail == whole[40:]
    assert torch.equal(resumed.w1, full.w1) and torch.equal(resumed.w2, full.w2)
    assert resumed.best_loss == min(whole) and resumed.final_loss == whole[-1]


@pytest.mark.parametrize("reason,checkpointed", [("handback", True), ("cancel", False), ("lease lost", False)])
def test_should_stop_checkpoints_only_to_hand_back(reason: str, checkpointed: bool) -> None:
    """A hand-back checkpoints (to resume elsewhere); every stop but a lost lease keeps the losses so far."""
    from shared.errors import Interrupted

    seen: list[int] = []
    snaps: list[loop.Resume] = []
    with pytest.raises(Interrupted) as stopped:
        loop.train(small_spec(iterations=100), CPU,
                   lambda name, first, step, v: seen.extend(range(first, first + len(v))),
                   should_stop=lambda: reason if len(seen) >= 9 else None,
                   checkpoint=lambda r: snaps.append(clone(r)), checkpoint_every=1000, flush_iterations=3,
                   flush_interval_s=3600)
    # batches of 3: iterations 0-8 were flushed when the stop came at 9 (none pending)
    assert stopped.value.reason == reason and stopped.value.iteration == 9
    assert [s.iteration for s in snaps] == ([9] if checkpointed else [])
    assert seen == list(range(9))
