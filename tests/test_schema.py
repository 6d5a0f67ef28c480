"""The job file's JSON Schema as `tensorq schema` prints it (shared/sweeps.py's, through the CLI in-process, no
broker): the README's job files are valid under it, both spellings of a field are, typos are not."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from tests.support.cli import Cli
from tests.support.processes import CLOSED_BROKER, tq_env
from tests.support.readme import blocks


@pytest.fixture
def offline(tmp_path) -> Cli:
    return Cli(tq_env(CLOSED_BROKER, tmp_path))


def test_the_readme_has_the_examples_tests_run() -> None:
    """tests/e2e/test_readme.py runs each block: none there would make it pass by running nothing."""
    assert blocks("python"), "no ```python block in README.md"
    assert blocks("yaml"), "no ```yaml block in README.md"


@pytest.mark.parametrize("yaml_text", blocks("yaml"), ids=lambda t: f"{len(t.splitlines())}-lines")
def test_yaml_block_validates_against_the_printed_schema(yaml_text: str, offline: Cli) -> None:
    """Given `tensorq schema`, Then the README's job file (the `{jobs: [...]}` form, hyphenated or snake_case
    fields) is valid under it, as an editor would check it."""
    printed = offline("schema")
    assert printed.returncode == 0, printed.stderr
    schema = json.loads(printed.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(yaml_text))]
    assert not errors, errors


def test_schema_accepts_snake_case_and_refuses_typos(offline: Cli) -> None:
    schema = json.loads(offline("schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid([{"kind": "train", "hidden_size": 10}])
    assert validator.is_valid({"jobs": [{"kind": "train", "hidden-size": 10}]})
    assert not validator.is_valid([{"kind": "train", "hiden_size": 10}])
    assert not validator.is_valid({"jobs": []})


def test_the_schema_checks_job_files(offline: Cli) -> None:
    done = offline("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    good = [{"kind": "train", "hidden-size": 50, "sweep": {"lr": [1e-6, 1e-5]}, "seeds": 2, "priority": "low"},
            {"kind": "op", "op": "matmul", "a": "randn:2x3", "b": [[1], [2], [3]], "seed": 1}]
    jsonschema.validate(good, schema)
    for bad in ([{"kind": "train", "hiden-size": 50}], [{"kind": "op", "op": "pow", "a": 1, "b": 2}],
                [{"kind": "train", "priority": "urgent"}]):
        try:
            jsonschema.validate(bad, schema)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"the schema accepted {bad}")
