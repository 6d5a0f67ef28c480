"""The README's own examples run exactly as printed: every ```python block is run and every ```yaml block is
submitted as a job file (by the CLI in-process), against a real Redis and a real CPU worker, so the README cannot
drift again. (That the blocks exist, and the job files' schema: tests/test_schema.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support.cli import Cli
from tests.support.processes import tq_env
from tests.support.readme import blocks


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
def test_yaml_block_submits_and_every_job_succeeds(yaml_text: str, cli: Cli, cpu_worker, tmp_path: Path) -> None:
    """Given the README's job file verbatim (its weights.npy holding floats), When it is submitted with --wait,
    Then every job it stands for succeeds."""
    path = job_file_folder(tmp_path, yaml_text)
    done = cli("submit", "-f", str(path), "--wait", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    states = [json.loads(cli("status", j, "--json").stdout)["state"] for j in out["ids"]]
    assert states and set(states) == {"succeeded"}, states
