"""The commands that look at runs, as the new-user report (2026-12-01) found them, against a real worker:
one-line errors for what they cannot show, readable tables and plots, honest it/s, regular progress lines,
and a running job's progress in `status` and `compare`."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.processes import REPO, as_a_terminal_starts_it, wait_until
from tests.support.training import LONG, TINY


def run_json(cli, *args: str, rc: int = 0) -> dict | list:
    done = cli(*args, "--json")
    assert done.returncode == rc, (args, done.returncode, done.stderr)
    return json.loads(done.stdout)


def one_line_error(done, rc: int, text: str) -> None:
    assert done.returncode == rc, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and text in done.stderr, done.stderr
    assert "internal error" not in done.stderr


@pytest.fixture(scope="module")
def jobs(cli, cpu_worker, tmp_path_factory) -> dict:
    """Two finished training jobs that differ in iterations, and an op job."""
    a = run_json(cli, "submit", "train", "--iterations", "300", "--wait")
    b = run_json(cli, "submit", "train", "--iterations", "200", "--wait")
    op = run_json(cli, "submit", "op", "add", "[1,2]", "[3,4]", "--wait")
    return {"a": a, "b": b, "op": op}


@pytest.mark.parametrize("command", [["history", "{a}"], ["compare", "{a}", "{b}"]])
def test_png_into_a_missing_folder_is_a_one_line_error(cli, jobs, command) -> None:
    args = [c.format(a=jobs["a"]["id"], b=jobs["b"]["id"]) for c in command]
    one_line_error(cli(*args, "--png", "/nonexistent/dir/x.png"), 2, "--png: no such folder: /nonexistent/dir")


def test_an_op_job_has_no_history_and_is_not_compared(cli, jobs) -> None:
    op = jobs["op"]["id"]
    one_line_error(cli("history", op), 2, f"job {op} is an op job; only training jobs have a loss history")
    one_line_error(cli("history", op, "--plot"), 2, "is an op job")
    one_line_error(cli("compare", op, jobs["a"]["id"]), 2, f"job {op} is an op job; compare takes training jobs")


def test_compare_of_a_mixed_group_leaves_the_op_jobs_out(cli, cpu_worker, tmp_path) -> None:
    """Given a job file with a training job and an op, `compare --group` tabulates the training job and says
    it left the op out; the group table shows `-` (not None) in the op's swept columns."""
    file = tmp_path / "mixed.json"
    file.write_text(json.dumps([{"kind": "train", "iterations": 30, "sweep": {"lr": [1e-6, 2e-6]}},
                                {"kind": "op", "op": "add", "a": [1], "b": [2]}]))
    group = run_json(cli, "submit", "-f", str(file), "--wait")
    done = cli("compare", "--group", group["group"], "--json")
    assert done.returncode == 0, done.stderr
    assert "left out 1 op job of the group" in done.stderr
    assert {row["id"] for row in json.loads(done.stdout)["jobs"]} == set(group["ids"][:2])
    shown = cli("group", group["group"])
    assert shown.returncode == 0 and "None" not in shown.stdout
    op_row = next(line for line in shown.stdout.splitlines() if group["ids"][2] in line)
    assert " - " in op_row


def test_compare_names_planned_and_done_iterations_apart(cli, jobs) -> None:
    """Given jobs that differ in --iterations, the table heads the spec's column ITERATIONS and the iterations
    run DONE (never two ITERS); the JSON keeps the spec's value under `iterations` and adds `iterations_done`."""
    a, b = jobs["a"]["id"], jobs["b"]["id"]
    shown = cli("compare", a, b, "--no-plot")
    assert shown.returncode == 0, shown.stderr
    header = shown.stdout.splitlines()[0].split()
    assert header.count("ITERS") == 0 and "DONE" in header and "ITERATIONS" in header
    table = run_json(cli, "compare", a, b)
    assert table["differing_fields"] == ["iterations"]
    assert [(r["iterations"], r["iterations_done"]) for r in table["jobs"]] == [(300, 300), (200, 200)]


def test_history_plot_labels_decades_and_compare_curves_differ_off_a_terminal(cli, jobs) -> None:
    """Given a curve spanning decades, the log-scale y labels are powers of ten (not 0.0000 for the lowest);
    piped (no colours), each curve of `compare` has its own glyph, shown in the legend."""
    plot = cli("history", jobs["a"]["id"], "--plot")
    assert plot.returncode == 0, plot.stderr
    labels = re.findall(r"^\s*(\S+)┤", plot.stdout, re.MULTILINE)
    assert labels and all(re.fullmatch(r"1(e-?\d+)?", lab) for lab in labels), labels
    assert not re.search(r"0\.0+┤", plot.stdout)
    shown = cli("compare", jobs["a"]["id"], jobs["b"]["id"])
    assert shown.returncode == 0, shown.stderr
    legend = [line for line in shown.stdout.splitlines() if jobs["a"]["id"] in line or jobs["b"]["id"] in line]
    glyphs = {re.search(r"(\S\S) (?:" + jobs["a"]["id"] + "|" + jobs["b"]["id"] + ")", line).group(1)
              for line in legend if "┤" in line or "│" in line}
    assert len(glyphs) == 2, legend


def test_watch_on_a_finished_job_shows_its_own_it_per_s(cli, jobs) -> None:
    done = cli("watch", jobs["a"]["id"])
    assert done.returncode == 0, done.stderr
    rate = jobs["a"]["summary"]["iterations_per_s"]
    assert f"{rate:,.0f} it/s" in done.stdout, done.stdout
    assert not re.search(r"\d{1,3}(,\d{3}){2,} it/s", done.stdout)  # never millions of it/s


def test_submit_wait_prints_a_line_at_each_tenth(cli, cpu_worker) -> None:
    done = cli("submit", "train", "--iterations", "500", "--wait")
    assert done.returncode == 0, done.stderr
    assert [int(n) for n in re.findall(r"iteration (\d+)/500", done.stdout)] == list(range(50, 501, 50))


def test_wait_with_a_timeout_says_so_plainly_and_still_prints_json(cli, cpu_worker) -> None:
    job = run_json(cli, "submit", "train", *LONG)
    try:
        done = cli("wait", job["id"], "--timeout", "1")
        one_line_error(done, 1, f"job {job['id']} is still ")
        assert re.search(r"after 1 s$", done.stderr.strip()), done.stderr
        as_json = cli("wait", job["id"], "--timeout", "1", "--json")
        assert as_json.returncode == 1
        assert [r["id"] for r in json.loads(as_json.stdout)] == [job["id"]]
    finally:
        cli("cancel", job["id"])


def test_status_and_compare_show_a_running_jobs_progress(cli, client, cpu_worker) -> None:
    """Given a running job, `status` shows its iteration and latest loss, and `compare` its iteration (DONE or
    ITERS) and latest loss (FINAL); `status` prints no Python reprs (None, False)."""
    job = run_json(cli, "submit", "train", *LONG)
    try:
        wait_until(lambda: len(client.job(job["id"]).losses()) > 0, 60, "losses")
        shown = cli("status", job["id"])
        assert shown.returncode == 0, shown.stderr
        m = re.search(r"progress iteration (\d+)/2000000, loss (\S+)", shown.stdout)
        assert m and int(m.group(1)) > 0 and float(m.group(2)) > 0, shown.stdout
        assert "None" not in shown.stdout and "False" not in shown.stdout
        row = run_json(cli, "compare", job["id"])["jobs"][0]
        assert row["state"] == "running" and row["iterations"] > 0 and row["final_loss"] > 0
    finally:
        cli("cancel", job["id"])
    finished = cli("status", job["id"])
    assert "None" not in finished.stdout and "False" not in finished.stdout and "weights_at=" in finished.stdout


def run_in_narrow_pty(env: dict, *args: str, stop_when: str, columns: int, timeout: float = 120) -> str:
    """The CLI on a real terminal `columns` wide; Ctrl-C once the screen shows `stop_when`."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "producer", *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**env, "COLUMNS": str(columns), "TERM": "xterm-256color"}, cwd=REPO,
                            close_fds=True, preexec_fn=as_a_terminal_starts_it)
    os.close(slave)
    seen, deadline, interrupted = b"", time.monotonic() + timeout, False
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not interrupted and re.search(stop_when.encode(), seen):
            proc.send_signal(signal.SIGINT)
            interrupted = True
        assert time.monotonic() < deadline, seen[-2000:]
    os.close(master)
    proc.wait(timeout=30)
    return seen.decode(errors="replace")


def test_an_80_column_bar_keeps_it_per_s_and_eta(cli, cpu_worker) -> None:
    job = run_json(cli, "submit", "train", "--iterations", "3000000", *TINY)
    try:
        screen = run_in_narrow_pty(cli.env, "watch", job["id"], stop_when=r"it/s eta \S+ loss", columns=80)
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
        line = next(seg for seg in re.split(r"[\r\n]", plain) if "it/s" in seg)
        assert re.search(r"\d+/3000000 [\d,]+ it/s eta \S+ loss", line) and len(line.rstrip()) <= 80, line
    finally:
        cli("cancel", job["id"])
