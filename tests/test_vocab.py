"""Each vocabulary is written once (shared/vocab.py): the worker's tables, the CLI's choices, the specs and the
job file's schema are derived from it, and these tests fail when one of them drifts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from producer.cli import main as cli
from shared import sweeps
from shared.specs import TensorOpSpec, TrainSpec
from shared.vocab import Activation, Device, Grad, JobState, Kind, Loss, Op, OpDtype, Priority, StopReason, TrainDtype

REPO = Path(__file__).resolve().parents[1]


def test_the_worker_has_one_function_per_op_and_one_dtype_per_op_dtype() -> None:
    from worker import ops

    assert set(ops.OPS) == set(Op), "worker/ops.py OPS and shared.vocab.Op disagree"
    assert set(ops.DTYPES) == set(OpDtype), "worker/ops.py DTYPES and shared.vocab.OpDtype disagree"


def test_the_training_loop_knows_every_train_dtype() -> None:
    import torch

    from shared.tensors import WIRE_DTYPES

    for dtype in TrainDtype:
        assert isinstance(getattr(torch, dtype.value), torch.dtype)
    assert set(OpDtype.values()) <= set(WIRE_DTYPES), "every op dtype travels on the wire"


def _choices(*path: str) -> dict[str, tuple[str, ...]]:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return {p.name or "": tuple(p.type.choices) for p in command.params if isinstance(p.type, click.Choice)}


def test_the_cli_offers_exactly_the_vocabularies() -> None:
    op = _choices("submit", "op")
    assert op["op"] == Op.values() and op["dtype"] == OpDtype.values() and op["device"] == Device.values()
    train = _choices("submit", "train")
    assert (train["activation"], train["loss"], train["grad"], train["dtype"]) == (
        Activation.values(), Loss.values(), Grad.values(), TrainDtype.values())
    assert train["priority"] == Priority.values()
    listing = _choices("list")
    assert listing["state"] == JobState.values() and listing["kind"] == Kind.values()


def test_the_job_file_schema_is_built_from_the_same_words() -> None:
    defs = sweeps.json_schema()["$defs"]
    for words in (Op, OpDtype, TrainDtype, Device, Activation, Loss, Grad, Priority):
        assert tuple(defs[words.__name__]["enum"]) == words.values(), words.__name__


@pytest.mark.parametrize("field", ["batch_size", "input_size", "hidden_size", "output_size", "lr", "iterations",
                                   "seed", "activation", "loss", "grad", "dtype"])
def test_cli_help_shows_the_specs_own_defaults(field: str) -> None:
    """Given `submit train --help`, Then each flag's default is TrainSpec's (the CLI sends no copy of its own)."""
    text = cli.commands["submit"].commands["train"].get_help(click.Context(cli))  # type: ignore[attr-defined]
    flag = "--" + field.replace("_", "-")
    line = " ".join(text.split("\n" + " " * 2 + flag, 1)[1].split("\n  --", 1)[0].split())
    assert f"default: {TrainSpec.model_fields[field].default}" in line, line


def test_words_print_as_their_values() -> None:
    assert f"{Op.MATMUL}" == "matmul" and str(JobState.FAILED) == "failed" and Kind.TRAIN == "train"
    assert TensorOpSpec.model_fields["device"].default is Device.AUTO


@pytest.mark.parametrize(("text", "reason"), [("cancel", StopReason.CANCEL), ("handback", StopReason.HANDBACK),
                                              ("lease lost", StopReason.LEASE_LOST),
                                              ("timed out after 2 s", StopReason.TIMED_OUT),
                                              ("diverged: loss became nan", StopReason.DIVERGED)])
def test_stop_reasons_read_back_from_their_text(text: str, reason: StopReason) -> None:
    assert StopReason.of(text) is reason
    assert reason.keeps_what_it_made == (reason not in (StopReason.HANDBACK, StopReason.LEASE_LOST))


def test_an_unknown_stop_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="not a stop reason"):
        StopReason.of("cancelled-ish")


def test_the_vocabulary_imports_neither_pydantic_nor_torch() -> None:
    """`tensorq --help` imports it: a fresh interpreter, so modules loaded by other tests do not count."""
    code = ("import sys, shared.vocab, shared.kinds, shared.defaults; "
            "print(sorted(m for m in ('pydantic', 'torch', 'numpy', 'redis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
