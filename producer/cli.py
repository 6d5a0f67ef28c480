"""The `tensorq` command line. Exit codes: 0 ok, 1 job failed (or runtime error), 2 bad input, 3 broker unreachable.

Start-up stays fast: torch and celery are never imported here, redis/numpy/rich only inside commands.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from shared import __version__
from shared.errors import BrokerUnreachable, TensorqError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
OPS = ("add", "sub", "mul", "div", "matmul")
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
EXIT_JOB_FAILED = 1


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
                _fail(f"broker unreachable: lost the connection ({e})", BrokerUnreachable.exit_code)
            if os.environ.get("TENSORQ_DEBUG"):
                raise
            _fail(f"internal error: {type(e).__name__}: {e} (set TENSORQ_DEBUG=1 for the traceback)", 1)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Click's usage errors, in one line too (Click prints three: usage, a hint, the error)."""
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except click.exceptions.Abort:
            _fail("aborted", 1)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _is_connection_error(e: Exception) -> bool:
    redis_errors = sys.modules.get("redis.exceptions")
    return redis_errors is not None and isinstance(e, (redis_errors.ConnectionError, redis_errors.TimeoutError))


broker_option = click.option("--broker", metavar="URL", default=None,
                             help="Redis URL. Default: $TENSORQ_BROKER_URL, then the `tensorq up` record, "
                                  "then redis://127.0.0.1:6379/0.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _client(broker: str | None):
    from producer.client import Client

    return Client(broker)


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(cls=TensorqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tensorq")
def main() -> None:
    """tensorq: run PyTorch tensor-op and training jobs on GPU workers through Redis."""


# --- the embedded stack ---------------------------------------------------------------------------------

@main.command()
@click.option("--detach", "-d", is_flag=True, help="Return once everything is up, leaving it running.")
@click.option("--redis-port", type=click.IntRange(1, 65535), help="Port for Redis (default 6379, or the next free).")
@click.option("--flower-port", type=click.IntRange(1, 65535), help="Port for Flower (default 5555, or the next free).")
@click.option("--gpus", default="all", show_default=True, help="GPUs for workers: all, none, or indices like 0,1.")
@click.option("--flower/--no-flower", default=True, show_default=True, help="Start Flower too.")
@broker_option
def up(detach: bool, redis_port: int | None, flower_port: int | None, gpus: str, flower: bool,
       broker: str | None) -> None:
    """Start Redis, workers and Flower on this machine."""
    from producer import stack
    from shared.settings import home_dir

    home = home_dir()
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    record = stack.up(home, broker or os.environ.get("TENSORQ_BROKER_URL"), redis_port, flower_port, gpus,
                      flower, say)
    if detach:
        say("tensorq is up; `tensorq down` stops it")
        return
    say("tensorq is up; press Ctrl-C to stop")
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        say("stopping...")
        stack.stop(record, say)


@main.command()
@click.option("--timeout", type=click.FloatRange(0), default=60, show_default=True,
              help="Seconds each part gets to stop before it is killed.")
def down(timeout: float) -> None:
    """Stop what `tensorq up` started (queued jobs stay in Redis's append-only file)."""
    from producer import stack
    from shared.settings import home_dir

    record = stack.load(home_dir())
    if record is None:
        click.echo(f"nothing to stop: no `tensorq up` record in {home_dir()}", err=True)
        return
    stack.stop(record, lambda m: click.echo(m, err=True), timeout)
    click.echo("tensorq is down", err=True)


@main.command()
@click.option("--gpus", default="all", show_default=True,
              help="all, none (one CPU worker), or GPU indices like 0,1; one worker process per GPU.")
@click.option("--name", help="Node name stem (default gpu<i> or cpu; made unique per host).")
@click.option("--queue", "queues", multiple=True, help="An extra queue to consume (repeatable).")
@click.option("--loglevel", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@broker_option
def worker(gpus: str, name: str | None, queues: tuple[str, ...], loglevel: str, broker: str | None) -> None:
    """Run workers on this node: one Celery process pinned to each GPU, or one CPU worker."""
    from shared.protocol import QUEUE_NAME
    from shared.settings import resolve
    from worker import launcher

    if name and "@" in name:
        raise click.BadParameter("give the stem only; @host is added", param_hint="--name")
    for q in queues:
        if not QUEUE_NAME.fullmatch(q):
            raise click.BadParameter(f"{q!r} is not a queue name (letters, digits, '.', '_', '-')",
                                     param_hint="--queue")
    sys.exit(launcher.run(resolve(broker), gpus, name, queues, loglevel.upper()))


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--basic-auth", metavar="USER:PASS", envvar="FLOWER_BASIC_AUTH",
              help="Require this login (also $FLOWER_BASIC_AUTH); needed outside loopback.")
@click.option("--read-only", is_flag=True, help="No worker control (shutdown, pool, revoke) from the web UI.")
@click.option("--persistent/--no-persistent", default=True, show_default=True,
              help="Keep Flower's task history across restarts (in $TENSORQ_HOME/flower.db).")
@broker_option
def flower(port: int, address: str, basic_auth: str | None, read_only: bool, persistent: bool,
           broker: str | None) -> None:
    """Run Flower against the same broker and settings as the workers."""
    from shared.redis_conn import connect
    from shared.settings import resolve

    if address not in LOOPBACK and not basic_auth:
        raise click.BadParameter("Flower outside loopback needs --basic-auth USER:PASS", param_hint="--address")
    if basic_auth and ":" not in basic_auth:
        raise click.BadParameter("expected USER:PASS", param_hint="--basic-auth")
    settings = resolve(broker)
    connect(settings)  # exit 3 now, rather than a Flower that retries silently
    env = dict(os.environ, TENSORQ_BROKER_URL=settings.broker_url)
    if basic_auth:
        env["FLOWER_BASIC_AUTH"] = basic_auth  # through the environment, so it never shows in `ps`
    else:
        env.setdefault("FLOWER_UNAUTHENTICATED_API", "true")  # loopback only (checked above): let scripts read it
    args = [sys.executable, "-m", "celery", "-A", "worker.app", "flower", f"--port={port}", f"--address={address}"]
    if read_only:
        args.append("--read_only=True")
    if persistent:
        settings.home.mkdir(parents=True, exist_ok=True)
        args += ["--persistent=True", f"--db={settings.home / 'flower.db'}", "--state_save_interval=10000"]
    os.execve(sys.executable, args, env)


@main.command()
@json_option
@broker_option
def workers(as_json: bool, broker: str | None) -> None:
    """List live workers from their heartbeats (answers even while every worker is busy)."""
    nodes = _client(broker).registry.live()
    if as_json:
        _print_json(nodes)
        return
    from producer import render

    render.nodes_table(nodes)


# --- submitting ---------------------------------------------------------------------------------------

def submit_options(f):
    for option in reversed([
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="auto: a GPU worker when one is alive, else the CPU."),
        click.option("--queue", metavar="NAME", help="Send to this queue (a node group started with "
                                                    "`tensorq worker --queue NAME`) instead of gpu/cpu."),
        click.option("--wait", is_flag=True, help="Wait for the job; exit 1 if it fails."),
        json_option,
        broker_option,
    ]):
        f = option(f)
    return f


@main.group()
def submit() -> None:
    """Submit a job."""


@submit.command("op")
@click.argument("op", type=click.Choice(OPS))
@click.argument("a")
@click.argument("b")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), help="Seed for randn:SHAPE operands.")
@click.option("--dtype", type=click.Choice(["float16", "float32", "float64", "int32", "int64"]),
              help="Cast both operands (default: as given; literals read like torch.tensor).")
@submit_options
def submit_op(op: str, a: str, b: str, seed: int | None, dtype: str | None, device: str, queue: str | None,
              wait: bool, as_json: bool, broker: str | None) -> None:
    """Run OP on A and B: each a JSON literal, randn:2x2x2, or a .npy/.safetensors/.pt/.json file."""
    client = _client(broker)  # operands and spec are checked before Redis is opened
    job = client.submit_op(op, a, b, device=device, seed=seed, dtype=dtype, queue=queue)
    _after_submit(client, job, wait, as_json)


@submit.command("train")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--input-size", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--hidden-size", type=click.IntRange(1), default=100, show_default=True)
@click.option("--output-size", type=click.IntRange(1), default=10, show_default=True)
@click.option("--lr", type=float, default=1e-6, show_default=True)
@click.option("--iterations", type=click.IntRange(1), default=500, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--activation", type=click.Choice(["relu", "sigmoid"]), default="relu", show_default=True)
@click.option("--loss", type=click.Choice(["sse", "ce"]), default="sse", show_default=True)
@click.option("--grad", type=click.Choice(["autograd", "manual"]), default="autograd", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64", "bfloat16"]), default="float32",
              show_default=True)
@submit_options
def submit_train(device: str, queue: str | None, wait: bool, as_json: bool, broker: str | None,
                 **options: Any) -> None:
    """Train the note's two-layer network; the loss of every iteration is kept."""
    client = _client(broker)  # the spec is checked before Redis is opened
    job = client.submit_train(queue=queue, **options, device=device)
    _after_submit(client, job, wait, as_json)


def _after_submit(client, job, wait: bool, as_json: bool) -> None:
    record = job.status()
    if not client.registry.serves(record.queue):
        click.echo(f"warning: no live worker consumes queue {record.queue!r}; the job waits there", err=True)
    if not wait:
        if as_json:
            _print_json({"id": job.id, "kind": record.kind, "state": record.state, "queue": record.queue})
        else:
            click.echo(f"submitted {record.kind} job {job.id} to queue {record.queue}")
        return
    if not as_json:
        click.echo(f"submitted {record.kind} job {job.id} to queue {record.queue}; waiting", err=True)
    final = job.wait(on_losses=None if as_json else _progress_printer(job.id, record.spec))
    if as_json:
        _print_json(final.to_status())
    else:
        _print_outcome(job, final)
    if final.state != "succeeded":
        sys.exit(EXIT_JOB_FAILED)


def _progress_printer(job_id: str, spec: dict[str, Any]):
    """Prints a line about every tenth of the run (or every 2 s), from the batches the wait receives."""
    import time

    from producer import render

    total = int(spec.get("iterations") or 0)
    step = max(1, total // 10)
    state = {"next": step, "at": time.monotonic()}

    def on_losses(first: int, values) -> None:
        done = first + len(values)
        if done >= state["next"] or time.monotonic() - state["at"] > 2 or done == total:
            click.echo(render.progress_line(job_id, done, total, float(values[-1])))
            state["next"] = (done // step + 1) * step
            state["at"] = time.monotonic()

    return on_losses


def _print_outcome(job, final) -> None:
    from producer import render

    if final.state == "succeeded":
        if final.kind == "op":
            render.tensor(job.result())
        render.summary(final)
    else:
        click.echo(f"error: job {job.id} {final.state}: {final.error or 'no reason recorded'}", err=True)


# --- looking at jobs ------------------------------------------------------------------------------------

@main.command()
@click.argument("job_id", metavar="JOB")
@json_option
@broker_option
def status(job_id: str, as_json: bool, broker: str | None) -> None:
    """Show a job's state, worker, device, error and summary."""
    record = _client(broker).job(job_id).status()
    if as_json:
        _print_json(record.to_status())
    else:
        from producer import render

        render.status(record)


@main.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@json_option
@broker_option
def list_jobs(state: str | None, limit: int, as_json: bool, broker: str | None) -> None:
    """List jobs, newest first."""
    records = _client(broker).jobs(state, limit)
    if as_json:
        _print_json([r.to_status() for r in records])
    else:
        from producer import render

        render.jobs_table(records)


@main.command()
@click.argument("job_ids", metavar="JOB...", nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(0), help="Give up after this many seconds (exit 1).")
@json_option
@broker_option
def wait(job_ids: tuple[str, ...], timeout: float | None, as_json: bool, broker: str | None) -> None:
    """Wait for jobs to end; exit 0 when all succeeded, 1 otherwise."""
    import time

    client = _client(broker)
    jobs = [client.job(j) for j in job_ids]  # unknown ids exit 2 before any waiting
    deadline = None if timeout is None else time.monotonic() + timeout
    finals = []
    for job in jobs:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        progress = None
        if len(jobs) == 1 and not as_json:
            record = job.status()
            progress = _progress_printer(job.id, record.spec) if record.kind == "train" else None
        try:
            finals.append(job.wait(timeout=left, on_losses=progress))
        except TimeoutError as e:
            raise TensorqError(str(e)) from None
    if as_json:
        _print_json([f.to_status() for f in finals])
    for job, final in zip(jobs, finals, strict=True):
        if final.state != "succeeded":
            click.echo(f"error: job {job.id} {final.state}: {final.error or 'no reason recorded'}", err=True)
        elif not as_json:
            from producer import render

            render.summary(final)
    if any(f.state != "succeeded" for f in finals):
        sys.exit(EXIT_JOB_FAILED)


@main.command()
@click.argument("job_id", metavar="JOB")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@broker_option
def history(job_id: str, fmt: str, broker: str | None) -> None:
    """Print a training job's loss history, one row per iteration."""
    from producer import render

    job = _client(broker).job(job_id)
    chunks = ((first, values) for _, first, values in job.client.store.loss_chunks(job.id))
    render.history(chunks, fmt, job.id)


@main.command()
@click.argument("job_id", metavar="JOB")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE: .npy, .safetensors or .json (a training job's weights: .safetensors).")
@json_option
@broker_option
def result(job_id: str, output: Path | None, as_json: bool, broker: str | None) -> None:
    """Print (or write) an op job's result tensor, or a training job's summary and weights."""
    from producer import render
    from shared import tensors
    from shared.errors import BadInput

    job = _client(broker).job(job_id)
    record = job.status()
    if record.kind == "train":
        if output is not None:
            if output.suffix.lower() != ".safetensors":
                raise BadInput("a training job's weights are written as .safetensors")
            output.write_bytes(job.artifact_bytes("weights"))
            click.echo(f"wrote weights w1, w2 of job {job.id} to {output}", err=True)
            return
        weights = job.weights()
        shapes = {k: list(v.shape) for k, v in weights.items()}
        if as_json:
            _print_json({"id": job.id, "summary": record.summary, "weights": shapes})
        else:
            render.summary(record)
            click.echo("weights " + ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in shapes.items()))
        return
    array = job.result()
    if output is not None:
        tensors.save_file(array, output)
        click.echo(f"wrote result of job {job.id} to {output}", err=True)
    elif as_json:
        _print_json(tensors.to_literal(array))
    else:
        render.tensor(array)
