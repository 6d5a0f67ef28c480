"""The `tensorq` command line. Exit codes: 0 ok, 1 job failed (or runtime error), 2 bad input, 3 any broker problem
(unreachable, not serving now, a bad broker URL).

Start-up stays fast: torch and celery are never imported here, redis/numpy/rich only inside commands.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from producer.commands import curves, experiments, export, fleet, jobs, operate, submit
from shared import __version__
from shared.errors import BrokerUnreachable, TensorqError


class TensorqGroup(click.Group):
    """Turns every error into one line on stderr and its exit code; a traceback only with TENSORQ_DEBUG=1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TensorqError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            # the reader went away (`tensorq history J | head`): stop quietly, as a SIGPIPE'd tool would
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:
            if _is_connection_error(e):
                from shared.redis_conn import last_failure_message

                _fail(last_failure_message(e), BrokerUnreachable.exit_code)
            if os.environ.get("TENSORQ_DEBUG"):
                raise
            _fail(f"internal error: {type(e).__name__}: {e} (set TENSORQ_DEBUG=1 for the traceback)", 1)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = False, **extra: Any) -> Any:
        """Click's usage errors, in one line too (Click prints three: usage, a hint, the error)."""
        try:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except click.exceptions.Abort:
            _fail("aborted", 1)


def _fail(message: str, code: int) -> None:
    from shared.settings import scrub  # light: no redis

    message = scrub(message)  # a library's error may quote a broker URL's password
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    click.echo(f"error: {first}", err=True)
    sys.exit(code)


def _is_connection_error(e: Exception) -> bool:
    """A broker that is down or not serving now (shared/broker_errors.py): exit 3, said in one line."""
    from shared.broker_errors import not_now

    return not_now(e) is not None


@click.group(cls=TensorqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tensorq")
def main() -> None:
    """tensorq: run PyTorch tensor-op and training jobs on GPU workers through Redis."""
    import warnings

    # a warning (the client's "no live worker consumes queue ...", a library's) is one line, like an error
    warnings.showwarning = lambda message, *_, **__: click.echo(f"warning: {message}", err=True)


for command in (fleet.up, fleet.down, fleet.worker, fleet.flower, fleet.workers, submit.submit, submit.rerun,
                jobs.status, jobs.list_jobs, jobs.wait, jobs.result, jobs.cancel, curves.history, curves.compare,
                curves.watch, experiments.group, experiments.schema, export.export, fleet.functions_command,
                operate.metrics, operate.prune):
    main.add_command(command)
