"""Checkpoints without Redis: what a training job saves comes back exactly, and a checkpoint written before
there were named series (its loss's position alone, as `stream_id`) still reads."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save

from worker.loop import Resume
from worker.training import Checkpoint


def state() -> Resume:
    g = torch.Generator().manual_seed(1)
    return Resume(40, torch.randn(5, 3, generator=g), torch.randn(3, 2, generator=g), 1.25, 17, 1.5, 3.75)


def test_a_checkpoint_round_trips_exactly() -> None:
    saved = Checkpoint(state(), {"loss": "1700000000000-3", "val_loss": "1700000000000-1"}, torch.get_rng_state())
    back = Checkpoint.from_bytes(saved.to_bytes())
    assert back.positions == saved.positions
    assert torch.equal(back.rng, saved.rng)
    s, b = saved.state, back.state
    assert (b.iteration, b.best_loss, b.best_iteration, b.last_loss, b.seconds) == (40, 1.25, 17, 1.5, 3.75)
    assert torch.equal(b.w1, s.w1) and torch.equal(b.w2, s.w2)


def test_it_still_names_the_losss_position_for_older_workers() -> None:
    from shared.tensors import safetensors_metadata

    blob = Checkpoint(state(), {"loss": "9-0"}, torch.get_rng_state()).to_bytes()
    assert json.loads(safetensors_metadata(blob)["state"])["stream_id"] == "9-0"


def test_a_checkpoint_of_a_run_that_had_recorded_nothing() -> None:
    back = Checkpoint.from_bytes(Checkpoint(state(), {}, torch.get_rng_state()).to_bytes())
    assert back.positions == {}


def old_checkpoint(stream_id: str | None) -> bytes:
    """As workers wrote them before the metric series had names."""
    s = state()
    meta = {"iteration": s.iteration, "best_loss": s.best_loss, "best_iteration": s.best_iteration,
            "last_loss": s.last_loss, "seconds": s.seconds, "stream_id": stream_id}
    return save({"w1": s.w1, "w2": s.w2, "rng": torch.get_rng_state()}, metadata={"state": json.dumps(meta)})


def test_an_old_checkpoint_is_the_losss_position() -> None:
    back = Checkpoint.from_bytes(old_checkpoint("12-0"))
    assert back.positions == {"loss": "12-0"} and back.state.iteration == 40


def test_an_old_checkpoint_before_any_flush_keeps_no_series() -> None:
    assert Checkpoint.from_bytes(old_checkpoint(None)).positions == {}
