"""Running the fleet: `up`, `down`, `worker`, `flower`, `workers`."""

from __future__ import annotations

import functools
import os
import sys

import click

from producer.commands.common import broker_option, client, json_option, print_json, say

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--detach", "-d", is_flag=True, help="Return once everything is up, leaving it running.")
@click.option("--redis-port", type=click.IntRange(1, 65535), help="Port for Redis (default 6379, or the next free).")
@click.option("--flower-port", type=click.IntRange(1, 65535), help="Port for Flower (default 5555, or the next free).")
@click.option("--gpus", default="all", show_default=True, help="GPUs for workers: all, none, or indices like 0,1.")
@click.option("--flower/--no-flower", default=True, show_default=True, help="Start Flower too.")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Port for the Prometheus exporter (default 9808, or the next free).")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="Start the Prometheus exporter too (`tensorq metrics`, on loopback).")
@broker_option
def up(detach: bool, redis_port: int | None, flower_port: int | None, gpus: str, flower: bool,
       metrics_port: int | None, metrics: bool, broker: str | None) -> None:
    """Start Redis, workers, Flower and the Prometheus exporter on this machine."""
    from producer import stack
    from shared.settings import home_dir

    home = home_dir()
    start = functools.partial(stack.up, home, broker or os.environ.get("TENSORQ_BROKER_URL"), redis_port,
                              flower_port, gpus, flower, say, metrics_port, metrics)
    if detach:
        start()
        say("tensorq is up; `tensorq down` stops it")
        return
    import signal

    def stop_now(*_: object) -> None:
        raise KeyboardInterrupt

    # both, explicitly (a shell that starts `up` in the background leaves SIGINT ignored), and before anything
    # starts: a stop asked for while the parts start stops what started (stack.up does, on any exception)
    signal.signal(signal.SIGTERM, stop_now)
    signal.signal(signal.SIGINT, stop_now)
    record = None
    try:
        record = start()
        say("tensorq is up; press Ctrl-C to stop")
        while True:
            signal.pause()
    except KeyboardInterrupt:
        record = record or stack.load(home)  # None: stack.up was interrupted, and stopped what it had started
        if record is None:
            raise
        say("stopping...")
        stack.stop(record, say)


@click.command()
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
    stack.stop(record, say, timeout)
    click.echo("tensorq is down", err=True)


@click.command()
@click.option("--gpus", default="all", show_default=True,
              help="all, none (one CPU worker), or GPU indices like 0,1; one worker process per GPU.")
@click.option("--name", help="Node name stem (default gpu<i> or cpu; made unique per host).")
@click.option("--queue", "queues", multiple=True, help="An extra queue to consume (repeatable).")
@click.option("--loglevel", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--cpu-threads", type=click.IntRange(1), metavar="N",
              help="A fixed thread count for a CPU worker's jobs (default: torch's own when the box is quiet, "
                   "fewer while other processes keep its cores busy).")
@broker_option
def worker(gpus: str, name: str | None, queues: tuple[str, ...], loglevel: str, cpu_threads: int | None,
           broker: str | None) -> None:
    """Run workers on this node: one Celery process pinned to each GPU, or one CPU worker."""
    from shared.processes import python_module
    from shared.protocol import check_queue_name
    from shared.redis_conn import connect
    from shared.settings import resolve

    if name and "@" in name:
        raise click.BadParameter("give the stem only; @host is added", param_hint="--name")
    for q in queues:
        check_queue_name(q)
    settings = resolve(broker)
    connect(settings)  # exit 3 now, said as every command says it
    # The launcher (worker/launcher.py) runs in this process's place: the same pid, so SIGTERM/SIGINT reach it
    # and its exit code is this command's. The broker goes through the environment, never argv (`ps`).
    env = dict(os.environ, TENSORQ_BROKER_URL=settings.broker_url)
    # `--flag=value`: a value that starts with "-" stays a value
    args = [f"--gpus={gpus}", f"--loglevel={loglevel.upper()}", *([f"--name={name}"] if name else []),
            *(f"--queue={q}" for q in queues), *([f"--cpu-threads={cpu_threads}"] if cpu_threads else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, python_module("worker.launcher", *args), env)


@click.command()
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
    if basic_auth is not None:
        user, _, password = basic_auth.partition(":")
        if not user or not password:
            raise click.BadParameter("expected USER:PASS, both non-empty", param_hint="--basic-auth")
        if "," in basic_auth:  # Flower reads a comma as the start of a second login
            raise click.BadParameter("a comma would split the login in two in Flower; choose another",
                                     param_hint="--basic-auth")
    settings = resolve(broker)
    connect(settings)  # exit 3 now, rather than a Flower that retries silently
    env = dict(os.environ, TENSORQ_BROKER_URL=settings.broker_url)
    if basic_auth:
        env["FLOWER_BASIC_AUTH"] = basic_auth  # through the environment, so it never shows in `ps`
    from shared.processes import python_module

    # never `-m celery` as is: it would import a `worker/` or `shared/` of the working directory
    args = python_module("celery", "-A", "worker.app", "flower", f"--port={port}", f"--address={address}")
    if read_only:
        args.append("--read_only=True")
    if persistent:
        settings.home.mkdir(parents=True, exist_ok=True)
        args += ["--persistent=True", f"--db={settings.home / 'flower.db'}", "--state_save_interval=10000"]
    os.execve(sys.executable, args, env)


@click.command()
@click.option("--here", is_flag=True,
              help="Only this host's workers; exit 1 when none is alive (a container health check).")
@json_option
@broker_option
def workers(here: bool, as_json: bool, broker: str | None) -> None:
    """List live workers from their heartbeats (answers even while every worker is busy)."""
    import socket

    nodes = client(broker).registry.live()
    if here:
        nodes = [n for n in nodes if n.get("host") == socket.gethostname()]
    if as_json:
        print_json(nodes)
    else:
        from producer import render

        render.nodes_table(nodes)
    if here and not nodes:
        say(f"error: no live worker on {socket.gethostname()}")
        sys.exit(1)


@click.command("functions")
@json_option
@broker_option
def functions_command(as_json: bool, broker: str | None) -> None:
    """The job functions live workers offer (`tensorq submit run NAME`), and which workers offer each."""
    from shared.functions import named_in

    offered: dict[str, set[str]] = {}
    for node in client(broker).registry.live():
        queues = node.get("queues") or []
        for queue in queues if isinstance(queues, list) else str(queues).split(","):
            if (name := named_in(queue)) is not None:
                offered.setdefault(name, set()).add(str(node.get("name")))
    rows = [{"name": name, "workers": sorted(workers)} for name, workers in sorted(offered.items())]
    if as_json:
        print_json(rows)
    elif not rows:
        say("no live worker offers a job function (entry points in the group tensorq.jobs where workers run)")
    else:
        for row in rows:
            click.echo(f"{row['name']:24} {', '.join(row['workers'])}")
