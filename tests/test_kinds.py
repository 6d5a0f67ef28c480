"""The job kinds' table (shared/kinds.py): one entry per kind, and every part of an entry real — its spec
model, its task (registered on the worker), its runner, its lines."""

from __future__ import annotations

import pytest

from shared import kinds, specs
from shared.kinds import KINDS
from shared.vocab import Kind


def test_every_kind_has_one_entry_under_its_own_name() -> None:
    assert set(KINDS) == set(Kind)
    assert all(entry.kind is kind for kind, entry in KINDS.items())
    assert len({e.task for e in KINDS.values()}) == len(KINDS), "two kinds share a task"


@pytest.mark.parametrize("kind", list(Kind))
def test_an_entrys_spec_model_is_the_one_the_specs_parse(kind: Kind) -> None:
    model = KINDS[kind].model()
    assert model.model_fields["kind"].default is kind
    parsed = specs.parse_spec(SAMPLES[kind])
    assert type(parsed) is model


@pytest.mark.parametrize("kind", list(Kind))
def test_an_entrys_task_is_registered_on_the_worker_and_its_runner_resolves(kind: Kind) -> None:
    import worker.tasks  # noqa: F401 - registers the tasks
    from worker.app import app

    entry = KINDS[kind]
    assert entry.task.value in app.tasks
    assert callable(entry.execute())


@pytest.mark.parametrize("kind", list(Kind))
def test_an_entry_tells_a_stored_spec_and_summary_in_one_line(kind: Kind) -> None:
    entry = KINDS[kind]
    stored = specs.parse_spec(SAMPLES[kind]).model_dump(mode="json")
    for line in (entry.one_line(stored), entry.ended({}), specs.parse_spec(SAMPLES[kind]).describe()):
        assert line and "\n" not in line
    assert entry.progress_total(stored) >= (0 if kind is Kind.RUN else 1)  # a job function's total: its own


def test_a_job_file_entry_is_of_the_kind_it_names_or_whose_field_it_has() -> None:
    assert kinds.entry_kind({"kind": "op"}) == "op"
    assert kinds.entry_kind({"op": "add", "a": 1, "b": 2}) == "op"
    assert kinds.entry_kind({"hidden_size": 5}) == kinds.DEFAULT_KIND.value


def test_lookups_by_stored_text() -> None:
    assert kinds.of("train") is KINDS[Kind.TRAIN] and kinds.find("nope") is None
    assert kinds.has_curves("train") and not kinds.has_curves("op") and not kinds.has_curves("nope")
    assert kinds.by_task("tensorq.train") is KINDS[Kind.TRAIN]
    with pytest.raises(ValueError):
        kinds.of("nope")


SAMPLES = {
    Kind.OP: {"kind": "op", "op": "add", "a": {"source": "randn", "shape": [2]},
              "b": {"source": "randn", "shape": [2]}, "seed": 0},
    Kind.TRAIN: {"kind": "train", "iterations": 3},
    Kind.RUN: {"kind": "run", "function": "regress", "params": {"steps": 3}, "seed": 1},
}
