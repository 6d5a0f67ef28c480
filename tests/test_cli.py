"""The CLI's own handling (producer/cli.py's error mapping, options, settings read at the edge), in-process
with no broker at all: what it says before it would need one."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli, assert_one_line_error
from tests.support.processes import CLOSED_BROKER, tq_env


@pytest.fixture
def offline(tmp_path) -> Cli:
    """The CLI in-process with a closed broker: a command that reached for it would exit 3."""
    return Cli(tq_env(CLOSED_BROKER, tmp_path))


def test_broker_password_is_masked_in_errors(tmp_path) -> None:
    done = Cli(tq_env("redis://:hunter2@127.0.0.1:1/0", tmp_path))("status", "abc", timeout=30)
    assert done.returncode == 3 and "hunter2" not in done.stderr and ":***@" in done.stderr


def test_bad_input_is_found_before_the_broker_is_needed(offline) -> None:
    """Given no broker at all, a bad spec still says what is wrong (exit 2), not that Redis is down."""
    assert_one_line_error(offline("submit", "op", "matmul", "randn:2x3", "randn:2x2"), 2, "cannot multiply")


def test_a_typo_option_is_still_an_option_error(offline) -> None:
    done = offline("submit", "op", "add", "1", "2", "--sedd", "3")
    assert done.returncode == 2 and "No such option '--sedd'" in done.stderr and "--seed" in done.stderr


@pytest.mark.parametrize("bad", ["0", "-5", "soon"])
def test_a_bad_history_ttl_is_one_line(offline, bad) -> None:
    done = Cli({**offline.env, "TENSORQ_HISTORY_TTL": bad})("list")
    assert done.returncode == 2 and done.stderr.strip().startswith("error: TENSORQ_HISTORY_TTL")


def test_down_without_up_says_so(offline) -> None:
    done = Cli({k: v for k, v in offline.env.items() if k != "TENSORQ_BROKER_URL"})("down")
    assert done.returncode == 0 and "nothing to stop" in done.stderr
