"""The `tensorq` CLI run in this process through click's CliRunner, for the tests where no process boundary
matters: the same entry the console script calls (`producer.cli:main`, with its one-line error mapping and
exit codes), the same result shape as the subprocess `Tq` (returncode, stdout, stderr), and the same
isolation: its own TENSORQ_* environment, cwd and warnings, and what a process would cache reset per call."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.processes import REPO

# Read once, when shared.defaults is first imported: a value given here would not take effect in-process.
READ_AT_IMPORT = ("TENSORQ_MAX_TENSOR_ELEMENTS", "TENSORQ_MAX_LAYER_SIZE", "TENSORQ_MAX_TRAIN_ELEMENTS",
                  "TENSORQ_MAX_ITERATIONS", "TENSORQ_RESTART_WINDOW_S")
# They exec a launcher or Flower, or serve until stopped: in this process they would replace or block pytest.
PROCESS_COMMANDS = frozenset({"up", "worker", "flower", "metrics"})
# A fresh interpreter's filters (no -W, no PYTHONWARNINGS): pytest's own would show what `python` hides and,
# once a warning was shown from a line, hide it the next time, where every new process shows it again.
FRESH_WARNING_FILTERS: tuple[tuple[Any, type[Warning], str], ...] = (
    ("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""), ("ignore", ImportWarning, ""), ("ignore", ResourceWarning, ""))


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in done.stderr + done.stdout


class _LastResort(logging.Handler):
    """What Python does with a warning logged where no handler is configured: one line on the stderr of the
    moment (in a fresh process nothing else would see it; under pytest its capture handlers would)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@dataclass
class Cli:
    """`tensorq ARGS` in this process, against the broker and home in `env` (as `tq_env` makes it)."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None
                 ) -> subprocess.CompletedProcess[str]:
        """As `Tq` does, a call that outlasts `timeout` raises TimeoutExpired (here once it returns: pytest-timeout
        bounds one that hangs)."""
        from click.testing import CliRunner

        from producer.cli import main

        assert not args or args[0] not in PROCESS_COMMANDS, f"`tensorq {args[0]}` runs as a process: use Tq"
        differs = [k for k in READ_AT_IMPORT if self.env.get(k) != os.environ.get(k)]
        assert not differs, f"{', '.join(differs)} are read at import: use Tq, a fresh process"
        # exactly `env` for the call, as a process given it would have (CliRunner puts the rest back after)
        overrides: dict[str, str | None] = {k: v for k, v in self.env.items() if os.environ.get(k) != v}
        overrides.update({k: None for k in os.environ if k not in self.env})
        started = time.monotonic()
        with _as_a_fresh_process():
            result = CliRunner().invoke(main, list(args), input=input, env=overrides, prog_name="tensorq")
        stderr = result.stderr
        if result.exc_info is not None and not isinstance(result.exception, SystemExit):
            stderr += "".join(traceback.format_exception(*result.exc_info))  # as Python prints an uncaught one
        if time.monotonic() - started > timeout:
            raise subprocess.TimeoutExpired(["tensorq", *args], timeout, result.stdout, stderr)
        return subprocess.CompletedProcess(["tensorq", *args], result.exit_code, result.stdout, stderr)


@contextmanager
def _as_a_fresh_process() -> Iterator[None]:
    """Per call, what a new `tensorq` process would start without: the rich console made for the last call's
    streams, the broker secrets other calls met (each call masks its own), warnings already shown; and the
    cwd, warning hook and log handler a call sets, put back after it."""
    from producer import render
    from shared import settings

    secrets = set(settings._SECRETS)
    settings._SECRETS.clear()
    render.console.cache_clear()
    cwd = os.getcwd()
    root, last_resort = logging.getLogger(), _LastResort(logging.WARNING)
    root.addHandler(last_resort)
    try:
        os.chdir(REPO)
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category, module in FRESH_WARNING_FILTERS:
                warnings.filterwarnings(action, category=category, module=module, append=True)
            yield
    finally:
        root.removeHandler(last_resort)
        os.chdir(cwd)
        render.console.cache_clear()
        settings._SECRETS.clear()
        settings._SECRETS.update(secrets)
