"""shared/sweeps.py without a broker: a job entry (with `sweep`, `seeds`, `priority`, `queue`) expands into the
jobs it stands for, validated whole; `--sweep` text is read; a job file's problems name the file and the job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from producer.inputs import file_operand
from shared import sweeps
from shared.errors import BadInput
from shared.sweeps import Planned, expand, expand_all, load_job_file, parse_sweep_option

TINY = {"kind": "train", "batch-size": 4, "input-size": 5, "hidden-size": 3, "output-size": 2, "iterations": 5}


def refused(entry: object, where: str = "job 1") -> str:
    with pytest.raises(BadInput) as info:
        expand(entry, where)  # type: ignore[arg-type]
    return str(info.value)


# --- expand ---------------------------------------------------------------------------------------------

def test_a_plain_entry_is_one_job_with_the_defaults_around_it() -> None:
    [planned] = expand(dict(TINY), "job 1")
    assert isinstance(planned, Planned) and planned.spec.kind == "train"
    assert (planned.spec.batch_size, planned.spec.hidden_size, planned.spec.iterations) == (4, 3, 5)
    assert (planned.priority, planned.queue, planned.swept) == ("normal", None, {})


def test_flag_and_field_spellings_are_one_field() -> None:
    [hyphen] = expand({"kind": "train", "hidden-size": 7}, "j")
    [snake] = expand({"kind": "train", "hidden_size": 7}, "j")
    assert hyphen.spec == snake.spec and hyphen.spec.hidden_size == 7


def test_a_sweep_is_the_grid_in_order_and_each_job_keeps_its_values() -> None:
    planned = expand({**TINY, "sweep": {"lr": [1e-6, 1e-5], "hidden-size": [3, 4, 5]}}, "j")
    grid = [(p.spec.lr, p.spec.hidden_size) for p in planned]
    assert grid == [(lr, h) for lr in (1e-6, 1e-5) for h in (3, 4, 5)]  # the first field varies slowest
    assert planned[4].swept == {"lr": 1e-5, "hidden_size": 4}


def test_seeds_repeat_each_job_from_its_seed_and_multiply_the_grid() -> None:
    planned = expand({**TINY, "seed": 10, "seeds": 3, "sweep": {"lr": [1e-6, 1e-5]}}, "j")
    assert len(planned) == 6
    assert sorted({p.spec.seed for p in planned}) == [10, 11, 12]
    assert [p.swept["seed"] for p in planned[:3]] == [10, 11, 12]


def test_seeds_start_at_0_without_a_seed() -> None:
    assert [p.spec.seed for p in expand({**TINY, "seeds": 2}, "j")] == [0, 1]


def test_priority_and_queue_go_with_every_job_of_the_entry() -> None:
    planned = expand({**TINY, "priority": "high", "queue": "big", "sweep": {"lr": [1e-6, 1e-5]}}, "j")
    assert {(p.priority, p.queue) for p in planned} == {("high", "big")}


@pytest.mark.parametrize(("extra", "message"), [
    ({"priority": "urgent"}, "job 1: priority: must be high, normal, low (got 'urgent')"),
    ({"sweep": ["lr", 1]}, "job 1: sweep: must map fields to non-empty lists of values"),
    ({"sweep": {"lr": []}}, "job 1: sweep: must map fields to non-empty lists of values"),
    ({"sweep": {"lr": 1e-6}}, "job 1: sweep: must map fields to non-empty lists of values"),
    ({"seeds": 0}, "job 1: seeds: must be a whole number of at least 1"),
    ({"seeds": True}, "job 1: seeds: must be a whole number of at least 1"),
    ({"seeds": "2"}, "job 1: seeds: must be a whole number of at least 1"),
    ({"seeds": 2, "sweep": {"seed": [1, 2]}}, "job 1: give either seeds or a seed sweep, not both"),
])
def test_what_an_entry_may_not_say(extra: dict, message: str) -> None:
    assert refused({**TINY, **extra}) == message


def test_a_bad_value_names_the_combination_that_made_it() -> None:
    message = refused({**TINY, "sweep": {"lr": [1e-6, -1]}})
    assert message.startswith("job 1 (lr=-1): lr:"), message


def test_an_entry_that_is_not_a_mapping_is_refused() -> None:
    assert refused(["kind", "train"]) == "job 1: a job must be a mapping of fields"


def test_a_sweep_over_the_limit_is_refused_before_any_job_is_made() -> None:
    big = {"sweep": {"lr": [1e-6] * 101, "seed": list(range(100))}}
    assert refused({**TINY, **big}) == "job 1: the sweep makes 10,100 jobs, over the limit of 10,000"


def test_jobs_over_the_limit_across_entries_are_refused() -> None:
    entry = {**TINY, "sweep": {"seed": list(range(5_001))}}
    with pytest.raises(BadInput, match="job 2: over 10,000 jobs in one submit"):
        expand_all([("job 1", entry), ("job 2", entry)])


def test_an_op_entry_drawing_randn_gets_a_seed_recorded() -> None:
    [planned] = expand({"kind": "op", "op": "add", "a": {"source": "randn", "shape": [2]},
                        "b": {"source": "randn", "shape": [2]}}, "j")
    assert isinstance(planned.spec.seed, int)


# --- --sweep FIELD=V1,V2 ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "parsed"), [
    ("lr=1e-6,1e-5", ("lr", [1e-6, 1e-5])),
    ("hidden-size=4, 8,16", ("hidden_size", [4, 8, 16])),
    ("activation=relu,sigmoid", ("activation", ["relu", "sigmoid"])),
    ("allow-nonfinite=true,false", ("allow_nonfinite", [True, False])),
])
def test_sweep_options_read_numbers_as_numbers(text: str, parsed: tuple) -> None:
    assert parse_sweep_option(text) == parsed


@pytest.mark.parametrize("text", ["lr", "lr=", "=1,2", " =1"])
def test_a_malformed_sweep_option_says_the_form(text: str) -> None:
    with pytest.raises(BadInput, match=r"--sweep: expected FIELD=V1,V2,\.\.\. such as lr=1e-6,1e-5"):
        parse_sweep_option(text)


# --- job files ----------------------------------------------------------------------------------------------

def load(path: Path) -> list[Planned]:
    return load_job_file(path, file_operand)


def test_a_json_job_file_names_the_job_that_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([dict(TINY), {**TINY, "hidden-size": 0}]))
    with pytest.raises(BadInput, match=rf"^{path}: job 2: hidden-size:"):
        load(path)


@pytest.mark.parametrize(("text", "problem"), [
    ("[]", "expected a list of jobs (or a mapping with a `jobs` list)"),
    ('{"jobs": []}', "expected a list of jobs (or a mapping with a `jobs` list)"),
    ('{"kind": "train"}', "expected a list of jobs (or a mapping with a `jobs` list)"),
    ('"train"', "expected a list of jobs (or a mapping with a `jobs` list)"),
])
def test_a_job_file_must_hold_jobs(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(text)
    with pytest.raises(BadInput) as info:
        load(path)
    assert str(info.value) == f"{path}: {problem}"


def test_a_missing_job_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as info:
        load(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_operand_files_are_found_beside_the_job_file(tmp_path: Path) -> None:
    """Given `b: w.npy` in a job file read from elsewhere, Then w.npy is the one in the job file's folder."""
    folder = tmp_path / "experiment"
    folder.mkdir()
    np.save(folder / "w.npy", np.full((2, 2), 3, dtype=np.int64))
    (folder / "jobs.yaml").write_text("- {op: mul, a: [[1, 2], [3, 4]], b: w.npy}\n")
    [planned] = load(folder / "jobs.yaml")
    assert planned.spec.b.dtype == "int64" and planned.spec.b.shape == [2, 2]


def test_the_schema_names_both_spellings_of_each_field() -> None:
    train = sweeps.json_schema()["$defs"]["TrainEntry"]["properties"]
    assert "hidden-size" in train and "hidden_size" in train and train["hidden-size"] == train["hidden_size"]
