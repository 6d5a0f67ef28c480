"""The fast path (preallocated buffers, in-place updates, optional CUDA graph) against the note's loop."""

from __future__ import annotations

import pytest
import torch

from shared.errors import BadInput
from shared.specs import TrainSpec, parse_spec
from tests.note_loop import note_loop
from worker import loop

CPU = torch.device("cpu")
PAIRS = [(a, l) for a in ("relu", "sigmoid") for l in ("sse", "ce")]


def run(spec: TrainSpec, device: torch.device = CPU) -> tuple[list[float], loop.TrainResult]:
    losses: list[float] = []
    result = loop.train(spec, device, lambda name, first, step, v: losses.extend(v.tolist()))
    return losses, result


def test_the_fast_path_equals_the_notes_loop_on_the_cpu() -> None:
    """Given the note's sizes and seed, the fast path's losses and weights equal the inline loop's, value for
    value: same operations, same rounding, only without the graph and the allocations."""
    expected, w1, w2 = note_loop(seed=0, iterations=300)
    losses, result = run(TrainSpec(iterations=300, seed=0, fast=True))
    assert losses == expected
    assert torch.equal(result.w1, w1) and torch.equal(result.w2, w2)


@pytest.mark.parametrize("activation,loss", PAIRS)
def test_the_fast_path_equals_the_manual_path_in_float64(activation: str, loss: str) -> None:
    base = {"batch_size": 16, "input_size": 32, "hidden_size": 8, "output_size": 4, "iterations": 60, "lr": 1e-3,
            "dtype": "float64", "activation": activation, "loss": loss, "grad": "manual"}
    manual, _ = run(TrainSpec(**base))
    fast, _ = run(TrainSpec(**base, fast=True))
    assert torch.allclose(torch.tensor(fast), torch.tensor(manual), rtol=1e-10, atol=0)


def test_fast_and_cuda_graph_imply_manual_gradients() -> None:
    assert parse_spec({"kind": "train", "fast": True}).grad == "manual"
    assert parse_spec({"kind": "train", "cuda_graph": True}).grad == "manual"
    with pytest.raises(BadInput, match="use --grad manual"):
        parse_spec({"kind": "train", "fast": True, "grad": "autograd"})
    with pytest.raises(BadInput, match="needs a CUDA device"):
        parse_spec({"kind": "train", "cuda_graph": True, "device": "cpu"})


def test_a_cuda_graph_job_on_a_cpu_worker_fails_clearly() -> None:
    spec = TrainSpec(iterations=5, cuda_graph=True)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        loop.train(spec, CPU, lambda name, first, step, v: None)


def test_the_fast_path_resumes_from_a_checkpoint() -> None:
    spec = TrainSpec(iterations=80, seed=2, fast=True)
    whole, _ = run(spec)
    snaps: list[loop.Resume] = []
    loop.train(spec, CPU, lambda name, first, step, v: None, checkpoint=lambda r: snaps.append(
        loop.Resume(r.iteration, r.w1.clone(), r.w2.clone(), r.best_loss, r.best_iteration, r.last_loss)),
        checkpoint_every=30)
    tail: list[float] = []
    loop.train(spec, CPU, lambda name, first, step, v: tail.extend(v.tolist()), resume=snaps[0])
    assert tail == whole[30:]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu_check.sh runs these)")


@cuda
@pytest.mark.parametrize("variant", [{"fast": True}, {"cuda_graph": True}, {"fast": True, "tf32": True}])
def test_gpu_variants_follow_the_notes_loop(variant: dict) -> None:
    expected, _, _ = note_loop(seed=0, iterations=200)
    losses, _ = run(TrainSpec(iterations=200, seed=0, device="cuda", **variant), torch.device("cuda"))
    rtol = 1e-2 if variant.get("tf32") else 1e-3
    assert torch.allclose(torch.tensor(losses), torch.tensor(expected), rtol=rtol, atol=1e-4)
