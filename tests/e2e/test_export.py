"""`tensorq export --tensorboard DIR` against real workers: what TensorBoard's own reader gets back from a
finished job, a re-exported one and one resumed after its worker was killed equals the stored series point
for point, each step once; a sweep's group exports every job; errors are one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared.vocab import READY_NODE_STATES
from tests.support.cli import assert_one_line_error
from tests.support.processes import (
    CLOSED_BROKER,
    FAST_LAPSE,
    REPO,
    kill_9_its_worker,
    start_launcher,
    stop_process,
    wait_until,
)
from tests.support.training import FLAGS
from tests.test_tensorboard import assert_same_points, read_run

SMALL = ["--iterations", "300", "--batch-size", "8", "--input-size", "4", "--hidden-size", "8", "--output-size", "2",
         "--checkpoint-every", "50", "--device", "cpu"]
# One entry per kind of training spec whose series an export must carry whole: the loss alone, and a
# dataset's run that also records val_loss, accuracy and val_accuracy every 10 iterations.
DIGITS = ["--iterations", "300", "--dataset", "digits", "--loss", "ce", "--val-fraction", "0.25", "--eval-every", "10",
          "--standardize", "--hidden-size", "8", "--checkpoint-every", "50", "--device", "cpu"]
SPECS = {"regression": SMALL, "digits": DIGITS}


def submit(cli, *args: str) -> dict:
    done = cli("submit", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stored(client, job_id: str) -> dict:
    """The job's series as the store holds them: name -> (iterations, values)."""
    return {name: (m.iterations, m.values) for name, m in client.job(job_id).metrics().items()}


def scalar_fields(spec: dict, prefix: str = "") -> dict:
    """What the HParams plugin should hold of a spec: its str/int/float/bool fields, a nested dict's as
    `name.field`."""
    found = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            found.update(scalar_fields(v, f"{prefix}{k}."))
        elif isinstance(v, (str, int, float, bool)):
            found[f"{prefix}{k}"] = v
    return found


def export(cli, *args: str) -> dict:
    done = cli("export", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module", params=list(SPECS), ids=list(SPECS))
def trained(request, cli, cpu_worker) -> dict:
    """A finished training job of each spec in SPECS, run by the session's worker."""
    job = submit(cli, "train", *SPECS[request.param], "--wait")
    assert job["state"] == "succeeded", job
    return job


def test_every_point_of_every_series_reads_back_in_tensorboard(cli, client, trained, tmp_path) -> None:
    """Given a finished training job, its run holds each stored point at its iteration, once, and its spec as
    the HParams plugin's session."""
    series = stored(client, trained["id"])
    assert series["loss"][0] == list(range(trained["spec"]["iterations"]))
    out = export(cli, trained["id"], "--tensorboard", str(tmp_path))
    path = str(tmp_path / trained["id"])
    assert out == {"dir": str(tmp_path), "jobs": [{"id": trained["id"], "path": path,
                                                    "series": {n: len(its) for n, (its, _) in series.items()}}]}
    back = read_run(tmp_path / trained["id"])
    assert_same_points(back, series)
    fields = scalar_fields(trained["spec"])
    assert back.hparams == fields
    assert all(isinstance(back.hparams[k], bool) == isinstance(v, bool) for k, v in fields.items())  # flags stay flags
    assert trained["spec"]["timeout"] is None and "timeout" not in back.hparams  # None has no hparam type
    assert back.status == "STATUS_SUCCESS"


def test_the_line_per_job_names_its_series_points_and_run(cli, client, trained, tmp_path) -> None:
    done = cli("export", trained["id"], "--tensorboard", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    series = stored(client, trained["id"])
    points = sum(len(its) for its, _ in series.values())
    assert done.stdout == (f"{trained['id']}: {len(series)} series, {points:,} points -> "
                           f"{tmp_path / 'runs' / trained['id']}\n")


def test_exporting_twice_into_one_dir_gives_each_step_once(cli, client, trained, tmp_path) -> None:
    export(cli, trained["id"], "--tensorboard", str(tmp_path))
    export(cli, trained["id"][:8], "--tensorboard", str(tmp_path))  # by an id prefix: the same run folder
    back = read_run(tmp_path / trained["id"])
    assert len(back.files) == 1
    assert_same_points(back, stored(client, trained["id"]))


def test_a_job_resumed_after_kill_9_exports_each_step_once(redis_server, tq_home, registry, tmp_path, cli,
                                                           client) -> None:
    """Given a job whose worker was killed (kill -9) after checkpoints and past them, resumed by another worker
    from its checkpoint, the export holds each iteration once, equal to the stored series."""
    iterations, every = 3000, 200
    workers = [start_launcher(redis_server.url, tq_home, tmp_path / f"{n}.log", "--gpus", "none", "--name", n,
                              "--queue", "export-crash", **FAST_LAPSE)
               for n in ("export-a", "export-b")]  # side by side
    try:
        wait_until(lambda: all(len(w.nodes(registry)) == 1 and w.nodes(registry)[0].get("state") in READY_NODE_STATES
                               for w in workers), 90, "both workers")
        job = submit(cli, "train", *FLAGS, "--iterations", str(iterations), "--checkpoint-every", str(every),
                     "--queue", "export-crash")
        wait_until(lambda: len(client.job(job["id"]).losses()) >= 0.3 * iterations, 120, "30% progress")
        kill_9_its_worker(client, registry, job["id"])
        done = cli("wait", job["id"], "--timeout", "120", "--json")
        assert done.returncode == 0, done.stderr
    finally:
        for w in workers:
            stop_process(w.proc, 40)
    final = json.loads(done.stdout)[0]
    assert final["attempts"] == 2 and final["summary"]["resumed_from"] >= every
    series = stored(client, job["id"])
    assert series["loss"][0] == list(range(iterations))  # the worker trimmed what it recorded after the checkpoint
    export(cli, job["id"], "--tensorboard", str(tmp_path / "runs"))
    assert_same_points(read_run(tmp_path / "runs" / job["id"]), series)


def test_a_sweeps_group_exports_every_job(cli, client, cpu_worker, tmp_path) -> None:
    out = submit(cli, "train", *SMALL, "--sweep", "lr=1e-4,1e-3", "--wait")
    ids = out["ids"]
    assert len(ids) == 2
    exported = export(cli, "--group", out["group"], "--tensorboard", str(tmp_path))
    assert [j["id"] for j in exported["jobs"]] == ids
    for job_id, lr in zip(ids, (1e-4, 1e-3), strict=True):
        back = read_run(tmp_path / job_id)
        assert_same_points(back, stored(client, job_id))
        assert back.hparams["lr"] == lr


def test_a_groups_op_jobs_are_skipped_and_said_so(cli, client, cpu_worker, tmp_path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([{"kind": "op", "op": "add", "a": 1, "b": 2},
                                {"kind": "train", "iterations": 20, "hidden_size": 4, "device": "cpu"}]))
    out = submit(cli, "-f", str(path), "--wait")
    op, train = out["ids"]
    done = cli("export", "--group", out["group"], "--tensorboard", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"note: skipped job {op}: it is an op job, which records no metric series"
    assert done.stdout.startswith(f"{train}: 1 series, 20 points -> ")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [train]


@pytest.mark.parametrize("args,fragment", [
    ([], "give job ids, or --group GROUP"),
    (["0123456789abcdef", "--group", "g0123456789abcde"], "give job ids or --group GROUP, not both"),
    (["{op}"], "job {op} is an op job, which records no metric series: nothing to export"),
    (["{queued}"], "job {queued} is queued and has recorded no metric series yet: nothing to export"),
    (["0123456789abcdef"], "no job '0123456789abcdef'"),
    (["--group", "gnosuchgroup"], "no group 'gnosuchgroup'"),
])
def test_errors_are_one_line_exit_2(cli, cpu_worker, tmp_path, args, fragment) -> None:
    jobs = {"op": submit(cli, "op", "add", "1", "2", "--wait")["id"] if "{op}" in args else "",
            "queued": submit(cli, "train", *SMALL, "--queue", "export-unserved")["id"] if "{queued}" in args else ""}
    try:
        done = cli("export", *[a.format(**jobs) for a in args], "--tensorboard", str(tmp_path / "runs"))
    finally:
        if jobs["queued"]:
            cli("cancel", jobs["queued"])
    assert_one_line_error(done, 2, fragment.format(**jobs))
    assert not (tmp_path / "runs").exists()  # nothing written


def test_without_tensorboard_it_says_how_to_get_it(cli, tmp_path) -> None:
    """Said before the broker is asked anything (here a closed port: asked, it would exit 3)."""
    fake = tmp_path / "fake"
    (fake / "tensorboard").mkdir(parents=True)
    (fake / "tensorboard" / "__init__.py").write_text("raise ImportError('tensorboard is not installed')\n")
    env = {**cli.env, "PYTHONPATH": str(fake), "TENSORQ_BROKER_URL": CLOSED_BROKER}
    done = subprocess.run([sys.executable, "-m", "producer", "export", "0123abcd", "--tensorboard", str(tmp_path)],
                          env=env, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: export --tensorboard needs tensorboard (pip install 'tensorq[tensorboard]')"


def test_neither_help_nor_the_export_imports_torch(cli, trained, tmp_path) -> None:
    """The producer may have no torch; and `tensorq --help` does not pay for tensorboard's import."""
    code = ("import sys; from producer.cli import main; main(sys.argv[1:], prog_name='tensorq'); "
            "print('loaded:', sorted(m for m in ('torch', 'tensorboard') if m in sys.modules))")

    def loaded(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", code, *args], env=cli.env, capture_output=True, text=True,
                              cwd=REPO, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert loaded("--help") == "loaded: []"
    assert loaded("export", trained["id"], "--tensorboard", str(tmp_path)) == "loaded: ['tensorboard']"
