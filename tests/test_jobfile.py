"""shared/sweeps.py's job files, read without a broker: what a user writes in YAML or JSON becomes the jobs they
meant, or one line naming the file, the job and the problem."""

from __future__ import annotations

import sys
from importlib.metadata import requires
from pathlib import Path

import numpy as np
import pytest

from producer.inputs import file_operand
from shared.errors import BadInput
from shared.sweeps import load_job_file


def load(tmp_path: Path, text: str, name: str = "jobs.yaml") -> list:
    path = tmp_path / name
    path.write_text(text)
    return load_job_file(path, file_operand)


def test_pyyaml_is_a_dependency_of_every_install() -> None:
    """Given the README's installs (`.[worker]`, and plain `pip install tensorq`), Then PyYAML comes with them."""
    unconditional = [r.lower() for r in requires("tensorq") or [] if "extra ==" not in r]
    assert any(r.startswith("pyyaml") for r in unconditional), unconditional


def test_a_missing_pyyaml_is_not_reported_as_bad_yaml(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` now fails, as in a broken install
    with pytest.raises(BadInput) as info:
        load(tmp_path, "- kind: train\n")
    assert "needs PyYAML" in str(info.value) and "not valid YAML" not in str(info.value)


def test_randn_without_a_seed_gets_one_chosen_and_recorded(tmp_path) -> None:
    [planned] = load(tmp_path, "- kind: op\n  op: add\n  a: randn:2x2\n  b: 1\n")
    assert isinstance(planned.spec.seed, int)


def test_mapping_form_snake_case_and_yaml_12_numbers(tmp_path) -> None:
    """Given `{jobs: [...]}`, snake_case fields and `1e-3` (a string to PyYAML's YAML 1.1), Then they read as meant."""
    [planned] = load(tmp_path, "jobs:\n  - kind: train\n    hidden_size: 7\n    lr: 1e-3\n")
    assert planned.spec.hidden_size == 7 and planned.spec.lr == 1e-3


def test_an_entry_without_kind_is_a_training_job_unless_it_names_an_op(tmp_path) -> None:
    train, op = load(tmp_path, "- iterations: 3\n- op: mul\n  a: [1., 2.]\n  b: 2\n")
    assert train.spec.kind == "train" and op.spec.kind == "op"


def test_op_literals_in_a_job_file_read_like_python(tmp_path) -> None:
    np.save(tmp_path / "w.npy", np.ones((2, 2), np.float32))
    [planned] = load(tmp_path, "- kind: op\n  op: matmul\n  a: '[[1., 2.], [3., 4.]]'\n  b: w.npy\n")
    assert planned.spec.a.dtype == "float32" and planned.spec.result_dtype == "float32"


def test_float64_job_keeps_the_digits_of_its_literals(tmp_path) -> None:
    from shared import tensors

    [planned] = load(tmp_path, "- {kind: op, op: add, a: 0.1, b: 0.2, dtype: float64}\n")
    assert tensors.decode(planned.spec.a.model_dump()).item() == 0.1


def test_bad_yaml_says_where(tmp_path) -> None:
    with pytest.raises(BadInput, match=r"jobs.yaml: not valid YAML at line 2, column \d+"):
        load(tmp_path, "- kind: train\n  sweep: {lr: [1, 2}\n")


def test_bad_json_says_so(tmp_path) -> None:
    with pytest.raises(BadInput, match="jobs.json: not valid JSON"):
        load(tmp_path, "[{", "jobs.json")
