"""Watching, plotting and slicing loss histories, and the Python client, against a real worker. The CLI runs
in-process (`cli`), but where a real terminal is the point: there it runs in a pty, as a process."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from tests.support.processes import REPO, as_a_terminal_starts_it
from tests.support.training import TINY


def run_in_pty(env: dict, *args: str, stop_when: str | None = None, timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with a real terminal as stdout/stderr; with `stop_when`, send Ctrl-C (SIGINT) once the
    screen shows that text. Returns (exit code, everything the terminal received)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "producer", *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**env, "COLUMNS": "160", "TERM": "xterm-256color"}, cwd=REPO, close_fds=True,
                            preexec_fn=as_a_terminal_starts_it)
    os.close(slave)
    seen, deadline, interrupted = b"", time.monotonic() + timeout, False
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if stop_when and not interrupted and stop_when.encode() in seen:
            proc.send_signal(signal.SIGINT)
            interrupted = True
        assert time.monotonic() < deadline, f"still running after {timeout} s: {seen[-2000:]!r}"
    os.close(master)
    return proc.wait(timeout=30), seen.decode(errors="replace")


def submit_json(cli, *args: str) -> dict:
    done = cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_watch_draws_progress_and_loss_then_exits_0(cli, cpu_worker) -> None:
    """Given a running training job, `tensorq watch` in a real terminal shows i/N and the loss, then the summary."""
    job = submit_json(cli, "submit", "train", "--iterations", "4000", *TINY)
    code, screen = run_in_pty(cli.env, "watch", job["id"])
    assert code == 0, screen
    assert "4000/4000" in screen
    assert re.search(r"loss \d", screen) and "best" in screen
    assert f"succeeded\x1b[0m {job['id']}: final loss" in screen or f"succeeded {job['id']}" in screen


def test_submit_watch_shows_a_bar(cli, cpu_worker) -> None:
    code, screen = run_in_pty(cli.env, "submit", "train", "--iterations", "3000", *TINY, "--watch")
    assert code == 0, screen
    assert "3000/3000" in screen and "final loss" in screen


def test_a_queued_job_shows_its_place_and_ctrl_c_leaves_it_queued(cli, cpu_worker) -> None:
    """Given a job on a queue nobody consumes, watch shows it waiting with its position; Ctrl-C stops watching."""
    job = submit_json(cli, "submit", "op", "add", "1", "2", "--queue", "nobody-listens")
    code, screen = run_in_pty(cli.env, "watch", job["id"], stop_when="#1 in queue nobody-listens")
    assert code == 130, screen
    assert "stopped watching; the jobs keep running" in screen
    assert json.loads(cli("status", job["id"], "--json").stdout)["state"] == "queued"


def test_history_plot_and_png(cli, cpu_worker, tmp_path) -> None:
    job = submit_json(cli, "submit", "train", "--iterations", "300", "--wait")
    plot = cli("history", job["id"], "--plot")
    assert plot.returncode == 0, plot.stderr
    assert f"loss of {job['id']} (log scale)" in plot.stdout and "┤" in plot.stdout and "iteration" in plot.stdout
    png = tmp_path / "curve.png"
    drawn = cli("history", job["id"], "--png", str(png))
    assert drawn.returncode == 0, drawn.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 300 and height > 200


def test_png_without_matplotlib_says_how_to_get_it(cli, cpu_worker, tmp_path) -> None:
    job = submit_json(cli, "submit", "train", "--iterations", "5", "--wait")
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    env = {**cli.env, "PYTHONPATH": str(fake)}
    done = subprocess.run([sys.executable, "-m", "producer", "history", job["id"], "--png", str(tmp_path / "x.png")],
                          env=env, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --png needs matplotlib: pip install 'tensorq[plot]'"


def test_history_slices_agree_with_the_whole(cli, client, cpu_worker) -> None:
    job = submit_json(cli, "submit", "train", "--iterations", "2500", *TINY, "--wait")
    whole = client.job(job["id"]).losses()
    assert len(whole) == 2500

    def csv(*args: str) -> np.ndarray:
        out = cli("history", job["id"], "--format", "csv", *args)
        assert out.returncode == 0, out.stderr
        return np.loadtxt(io.StringIO(out.stdout), delimiter=",", skiprows=1, ndmin=2)

    every = csv("--every", "100")
    assert every[:, 0].tolist() == list(range(0, 2500, 100)) and every[:, 1].tolist() == whole[::100]
    tail = csv("--tail", "7")
    assert tail[:, 0].tolist() == list(range(2493, 2500)) and tail[:, 1].tolist() == whole[-7:]
    window = csv("--range", "995:1005")
    assert window[:, 0].tolist() == list(range(995, 1005)) and window[:, 1].tolist() == whole[995:1005]
    mixed = csv("--range", "1000:", "--every", "10", "--tail", "3")
    assert mixed[:, 0].tolist() == [2470, 2480, 2490]
    as_json = json.loads(cli("history", job["id"], "--format", "json", "--range", "10:20", "--every", "5").stdout)
    assert as_json == {"id": job["id"], "loss": [whole[10], whole[15]], "first_iteration": 10, "every": 5,
                       "metric": "loss", "iterations": [10, 15], "values": [whole[10], whole[15]]}
    bad = cli("history", job["id"], "--range", "9:3")
    assert bad.returncode == 2 and "ends before it starts" in bad.stderr


def test_compare_tabulates_and_names_the_differing_fields(cli, cpu_worker, tmp_path) -> None:
    a = submit_json(cli, "submit", "train", "--iterations", "50", "--lr", "1e-6", "--wait")
    b = submit_json(cli, "submit", "train", "--iterations", "50", "--lr", "2e-6", "--wait")
    out = cli("compare", a["id"], b["id"], "--json", "--png", str(tmp_path / "cmp.png"))
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    assert table["differing_fields"] == ["lr"]
    assert [row["id"] for row in table["jobs"]] == [a["id"], b["id"]]
    assert table["jobs"][0]["final_loss"] == a["summary"]["final_loss"] and table["jobs"][1]["lr"] == 2e-6
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    shown = cli("compare", a["id"], b["id"])
    assert shown.returncode == 0 and a["id"] in shown.stdout and "┤" in shown.stdout


def test_a_200k_iteration_history_is_compact_and_reads_back_whole(cli, client, redis_server, cpu_worker) -> None:
    """Given 200,000 iterations, the history takes at most 8 bytes per iteration in Redis (MEMORY USAGE)."""
    job = submit_json(cli, "submit", "train", "--iterations", "200000", *TINY, "--wait")
    key = f"tensorq:job:{job['id']}:loss"
    footprint = redis_server.client().memory_usage(key, samples=0)
    print(f"\n200k-iteration history: {footprint:,} bytes = {footprint / 200_000:.2f} bytes/iteration")
    assert footprint <= 8 * 200_000
    started = time.perf_counter()
    losses = client.job(job["id"]).losses()
    print(f"read back whole in {time.perf_counter() - started:.3f} s")
    assert len(losses) == 200_000 and losses[-1] == job["summary"]["final_loss"]


def test_client_round_trip(client, cpu_worker) -> None:
    """submit -> wait -> losses -> result through the Python client; results are torch tensors with torch."""
    train = client.submit_train(iterations=40, hidden_size=10, seed=3)
    seen: list[int] = []
    record = train.wait(timeout=60, on_losses=lambda first, losses: seen.extend(range(first, first + len(losses))))
    assert record.state == "succeeded" and seen == list(range(40))
    assert len(train.losses()) == 40 and train.losses()[-1] == record.summary["final_loss"]
    assert set(train.weights()) == {"w1", "w2"}
    op = client.submit_op("matmul", "[[1, 2], [3, 4]]", np.eye(2, dtype=np.int64))
    op.wait(timeout=60)
    result = op.result()
    assert isinstance(result, torch.Tensor) and result.tolist() == [[1, 2], [3, 4]]
    assert {j.id for j in client.jobs(limit=5)} >= {op.id, train.id}
    assert [j.id for j in client.jobs(kind="op", limit=1)] == [op.id]


def test_list_filters(cli, cpu_worker) -> None:
    job = submit_json(cli, "submit", "op", "sub", "5", "3", "--wait")
    recent = json.loads(cli("list", "--kind", "op", "--since", "5m", "--json").stdout)
    assert recent[0]["id"] == job["id"] and all(r["kind"] == "op" for r in recent)
    assert json.loads(cli("list", "--since", "2999-01-01", "--json").stdout) == []
    shown = cli("list", "--state", "succeeded", "--limit", "3")
    assert shown.returncode == 0 and "DEVICE" in shown.stdout and "FINAL LOSS" in shown.stdout
    bad = cli("list", "--since", "yesterday-ish")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_finished_jobs_expire_with_a_history_ttl(redis_server) -> None:
    """Given TENSORQ_HISTORY_TTL, a finished job's record, history and artifacts expire together."""
    from shared.keys import Keys
    from shared.store import JobStore
    from shared.vocab import JobState

    store = JobStore(redis_server.client(), Keys("ttltest:"), REPO / "unused", history_ttl_s=120)
    store.create("j1", "train", {}, "cpu")
    store.series.append("j1", "loss", 0, np.ones(3, dtype=np.float32))
    assert store.redis.ttl("ttltest:job:j1") == -1  # nothing expires while the job runs
    store.mark_finished("j1", JobState.SUCCEEDED, summary={}, artifacts={"weights": b"w"})
    for key in ("ttltest:job:j1", "ttltest:job:j1:loss", "ttltest:job:j1:artifact:weights"):
        assert 0 < store.redis.ttl(key) <= 120
    store.redis.delete("ttltest:job:j1")  # as if expired: the listing forgets it and prunes the index
    assert store.list() == [] and store.redis.zcard("ttltest:jobs") == 0
