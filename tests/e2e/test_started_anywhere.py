"""`tensorq up` (its launcher, workers and Flower), run from a user's project that has its own `shared/`,
`worker/` and `producer/` folders: no tensorq process imports from the working directory. And the stack's
record keeps its promises: an explicit port that differs from the running stack's is refused, a GPU that is
not there is named in the one-line error, and after `down` commands say tensorq is down instead of falling
to a Redis on 6379. Real processes, started through the `tensorq` console script as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from producer import stack
from tests.support.cli import assert_one_line_error
from tests.support.processes import free_port

TENSORQ = str(Path(sys.executable).parent / "tensorq")


def users_project(tmp_path: Path) -> Path:
    """A folder whose `shared`, `worker` and `producer` packages stop any process that imports them."""
    project = tmp_path / "project"
    for name in ("shared", "worker", "producer"):
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(f"raise SystemExit(\"imported the user's {name}/\")\n")
    return project


def run_in(cwd: Path, home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORQ_")}
    return subprocess.run([TENSORQ, *args], env={**env, "TENSORQ_HOME": str(home)}, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_up_from_a_folder_with_its_own_packages_runs_jobs_and_keeps_its_record_honest(tmp_path) -> None:
    """Given a user's project with shared/, worker/ and producer/ folders, when `tensorq up` starts Redis,
    workers and Flower from it, then a job runs; `up` on another port is refused while it is up; and after
    `down` a command without --broker says tensorq is down (exit 3), naming how to start it."""
    project, home = users_project(tmp_path), tmp_path / "home"
    port = free_port()
    up = run_in(project, home, "up", "--detach", "--gpus", "none", "--redis-port", str(port),
                "--flower-port", str(free_port()))
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").glob("*.log")) if up.returncode else ""
    assert up.returncode == 0, (up.stderr, logs[-3000:])
    try:
        done = run_in(project, home, "submit", "op", "add", "40", "2", "--wait", "--json")
        assert done.returncode == 0 and json.loads(done.stdout)["state"] == "succeeded", done.stderr

        other = run_in(project, home, "up", "--detach", "--redis-port", str(free_port()))
        assert_one_line_error(other, 2, f"tensorq is already up on another broker (redis://127.0.0.1:{port}/0)")
        same = run_in(project, home, "up", "--detach", "--redis-port", str(port))
        assert same.returncode == 0 and "already up" in same.stderr, same.stderr
    finally:
        down = run_in(project, home, "down")
    assert down.returncode == 0, down.stderr
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").glob("*.log"))
    assert "imported the user's" not in logs and "Traceback" not in logs, logs[-3000:]

    after = run_in(project, home, "list", timeout=60)
    assert_one_line_error(after, 3, f"tensorq is down (`tensorq down` stopped its broker, redis://127.0.0.1:{port}/0)")
    assert "tensorq up --detach" in after.stderr


def test_up_with_a_gpu_that_is_not_there_says_why_in_its_one_line(tmp_path) -> None:
    """Given no GPU 63 on this node, `up --gpus 63` fails with the launcher's own reason (exit 2), cleaned up."""
    home = tmp_path / "home"
    done = run_in(tmp_path, home, "up", "--detach", "--gpus", "63", "--no-flower", "--redis-port", str(free_port()))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]  # after up's progress lines
    assert len(errors) == 1 and errors[0].startswith("error: --gpus: no GPU 63 on this node (found: "), done.stderr
    assert stack.load(home) is None  # nothing left running, nothing recorded as up
