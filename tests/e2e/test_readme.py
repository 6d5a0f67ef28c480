"""The README's own examples run exactly as printed: every ```python block is run and every ```yaml block is
submitted as a job file, against a real Redis and a real CPU worker, so the README cannot drift again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from tests.conftest import REPO, Tq, tq_env

FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    return [body for lang, body in FENCE.findall(text) if lang == language]


def test_the_readme_has_the_examples_this_file_runs() -> None:
    assert blocks("python"), "no ```python block in README.md"
    assert blocks("yaml"), "no ```yaml block in README.md"


@pytest.mark.parametrize("code", blocks("python"), ids=lambda c: c.strip().splitlines()[0][:40])
def test_python_block_runs_as_printed(code: str, redis_server, cpu_worker, tq_home, tmp_path: Path) -> None:
    """Given a real broker and worker, When a README Python block runs verbatim in a fresh folder, Then it
    exits 0 with no traceback."""
    done = subprocess.run([sys.executable, "-"], input=code, env=tq_env(redis_server.url, tq_home), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def job_file_folder(tmp_path: Path, yaml_text: str) -> Path:
    """The folder a user would have: the job file and the files it names (floats, as weights hold)."""
    (tmp_path / "jobs.yaml").write_text(yaml_text)
    for entry in yaml.safe_load(yaml_text)["jobs"]:
        for operand in (entry.get("a"), entry.get("b")):
            if isinstance(operand, str) and operand.endswith(".npy"):
                np.save(tmp_path / operand, np.random.default_rng(0).standard_normal((2, 2)).astype(np.float32))
    return tmp_path / "jobs.yaml"


@pytest.mark.parametrize("yaml_text", blocks("yaml"), ids=lambda t: f"{len(t.splitlines())}-lines")
def test_yaml_block_validates_against_the_printed_schema(yaml_text: str, tq: Tq) -> None:
    """Given `tensorq schema`, Then the README's job file (the `{jobs: [...]}` form, hyphenated or snake_case
    fields) is valid under it, as an editor would check it."""
    printed = tq("schema")
    assert printed.returncode == 0, printed.stderr
    schema = json.loads(printed.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(yaml_text))]
    assert not errors, errors


def test_schema_accepts_snake_case_and_refuses_typos(tq: Tq) -> None:
    schema = json.loads(tq("schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid([{"kind": "train", "hidden_size": 10}])
    assert validator.is_valid({"jobs": [{"kind": "train", "hidden-size": 10}]})
    assert not validator.is_valid([{"kind": "train", "hiden_size": 10}])
    assert not validator.is_valid({"jobs": []})


@pytest.mark.parametrize("yaml_text", blocks("yaml"), ids=lambda t: f"{len(t.splitlines())}-lines")
def test_yaml_block_submits_and_every_job_succeeds(yaml_text: str, tq: Tq, cpu_worker, tmp_path: Path) -> None:
    """Given the README's job file verbatim (its weights.npy holding floats), When it is submitted with --wait,
    Then every job it stands for succeeds."""
    path = job_file_folder(tmp_path, yaml_text)
    done = tq("submit", "-f", str(path), "--wait", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    states = [json.loads(tq("status", j, "--json").stdout)["state"] for j in out["ids"]]
    assert states and set(states) == {"succeeded"}, states
