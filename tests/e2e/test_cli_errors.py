"""Bad input: one short line on stderr, exit 2 (3 for an unreachable broker), no traceback, nothing enqueued.
The CLI runs in-process (`cli`), but `worker`, which execs the launcher: that one as a process (`tq`)."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.cli import PROCESS_COMMANDS, Cli, assert_one_line_error
from tests.support.processes import CLOSED_BROKER, Tq, tq_env

BAD_SUBMITS = [
    (["submit", "op", "pow", "1", "2"], "pow"),
    (["submit", "op", "add", "[1, 2", "1"], "A: not a valid literal"),
    (["submit", "op", "add", "[1, os]", "1"], "A: not a valid literal ('os' is not a number"),
    (["submit", "op", "add", "[[1, 2], [3]]", "1"], "A: not a rectangular array"),
    (["submit", "op", "add", "1", "no/such/file.npy"], "B: no such file"),
    (["submit", "op", "matmul", "[[1,2,3],[4,5,6]]", "[[1,2],[3,4]]"], "matmul: cannot multiply 2x3 by 2x2"),
    (["submit", "op", "add", "randn:2x3", "randn:4"], "add: cannot broadcast 2x3 with 4"),
    (["submit", "op", "add", "randn:2x0", "1"], "A: randn"),
    (["submit", "train", "--hidden-size", "0"], "--hidden-size"),
    (["submit", "train", "--lr", "abc"], "--lr"),
    (["submit", "train", "--lr", "-1"], "lr:"),
    (["submit", "train", "--activation", "tanh"], "--activation"),
    (["submit", "train", "--loss", "ce", "--output-size", "1"], "output-size"),
    (["submit", "train", "--iterations", "99999999999"], "iterations"),
    (["submit", "train", "--batch-size", "65536", "--input-size", "65536"], "over the limit"),
    (["submit", "train", "--bogus"], "--bogus"),
    (["worker", "--gpus", "banana"], "--gpus"),
    (["list", "--state", "sleeping"], "--state"),
    (["history", "abc", "--format", "xml"], "--format"),
]


def queue_state(redis_server) -> tuple[int, int, int]:
    r = redis_server.client()
    return r.zcard("tensorq:jobs"), r.llen("cpu"), r.llen("gpu")


@pytest.mark.parametrize("args,fragment", BAD_SUBMITS)
def test_bad_input_is_one_line_exit_2_and_enqueues_nothing(cli, tq, redis_server, args, fragment) -> None:
    before = queue_state(redis_server)
    assert_one_line_error((tq if args[0] in PROCESS_COMMANDS else cli)(*args), 2, fragment)
    assert queue_state(redis_server) == before


@pytest.mark.parametrize("command", [["status"], ["history"], ["result"], ["wait"]])
def test_unknown_job_id_exits_2(cli, command) -> None:
    assert_one_line_error(cli(*command, "0123456789abcdef"), 2, "no job '0123456789abcdef'")


@pytest.mark.parametrize("command", [
    ["status", "abc"], ["list"], ["history", "abc"], ["result", "abc"],
    ["submit", "train", "--iterations", "3"], ["submit", "op", "add", "1", "2"], ["worker", "--gpus", "none"],
])
def test_unreachable_broker_exits_3_quickly(tmp_path, command) -> None:
    """Given no Redis at the broker URL, every command says so in one line and exits 3 within seconds."""
    env = tq_env(CLOSED_BROKER, tmp_path)
    run = Tq(env) if command[0] in PROCESS_COMMANDS else Cli(env)
    started = time.monotonic()
    done = run(*command, timeout=30)
    assert_one_line_error(done, 3, "broker unreachable at redis://127.0.0.1:1/0")
    assert time.monotonic() - started < 15


def test_submit_json_contract(cli) -> None:
    done = cli("submit", "op", "add", "1", "2", "--device", "cuda", "--json")  # no GPU worker: stays queued
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {"id", "state", "queue"} and out["queue"] == "gpu" and out["state"] == "queued"
    assert "no live worker consumes queue 'gpu'" in done.stderr
