"""`tensorq worker`: one Celery worker process per GPU (or one CPU worker), supervised.

Run as its own module (`python -m worker.launcher --gpus ...`): `tensorq worker` checks its flags and the
broker, then execs this in its place (same pid, so signals and exit codes are the launcher's own), and the
producer never imports worker code.

Each child is pinned with CUDA_VISIBLE_DEVICES and runs the solo pool, so CUDA is initialised only in a
process that never forks. A child that dies is restarted; the others keep serving. A child that crashes on
its own five times in a minute is given up; one that exits while the broker is not serving (the launcher
asks Redis: shared/broker_errors.py) is never given up, only restarted with back-off until it serves.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared import broker_errors, defaults, functions, processes
from shared.errors import BrokerUnreachable, TensorqError
from shared.keys import Keys
from shared.protocol import Queue, queues_in_priority_order
from shared.redis_conn import connect, last_failure_message
from shared.registry import NodeRegistry
from shared.settings import Settings, resolve, scrub
from worker import devices

if TYPE_CHECKING:
    import redis

log = logging.getLogger("tensorq.worker")

RESTART_LIMIT = 5  # restarts of one child within RESTART_WINDOW_S before it is given up
RESTART_WINDOW_S = defaults.RESTART_WINDOW_S


@dataclass
class Child:
    name: str
    queues: list[str]
    gpu: int | None
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] | None = None  # when it crashed on its own, within RESTART_WINDOW_S
    restart_at: float | None = None  # exited while the broker was not serving: start it again then
    outage_exits: int = 0  # exits in a row while the broker was not serving (the back-off grows with them)
    given_up: bool = False
    cpu_threads: int | None = None  # a CPU worker's fixed torch threads (None: follow the box)


def plan(gpus_arg: str, name: str | None, extra_queues: list[str], host: str | None = None) -> list[Child]:
    host = host or socket.gethostname()
    chosen = devices.select(gpus_arg, devices.visible_gpus() if gpus_arg.strip().lower() != "none" else [])
    base = name or ""
    if not chosen:
        bases = [Queue.CPU.value, *extra_queues]
        return [Child(f"{base or 'cpu'}@{host}", queues_in_priority_order([*bases, *functions.queues(bases)]), None)]
    bases = [Queue.GPU.value, *extra_queues]
    queues = queues_in_priority_order([*bases, *functions.queues(bases)])  # and the job functions it offers
    return [Child(f"{base}gpu{g.index}@{host}", queues, g.index) for g in chosen]


def claim_names(children: list[Child], registry: NodeRegistry, owner: str) -> None:
    """Give each child a node name no live worker holds: gpu0@host, else gpu0-2@host, gpu0-3@host..."""
    for child in children:
        stem, host = child.name.split("@", 1)
        for n in range(1, 1000):
            candidate = f"{stem}@{host}" if n == 1 else f"{stem}-{n}@{host}"
            if registry.claim(candidate, owner):
                child.name = candidate
                break


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the launcher dies, so no orphan keeps a GPU.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def cpu_env(threads: int | None) -> dict[str, str]:
    """What a CPU worker's OpenMP runtime is told: `threads` when given (`--cpu-threads N`, a fixed count).
    Otherwise nothing: its jobs start with torch's own count and waiting, and follow how busy the box is
    (worker/cpu_share.py)."""
    return {} if threads is None else {"OMP_NUM_THREADS": str(threads)}


def start(child: Child, settings: Settings, loglevel: str) -> None:
    env = dict(os.environ, TENSORQ_BROKER_URL=settings.broker_url, TENSORQ_KEY_PREFIX=settings.key_prefix,
               TENSORQ_VISIBILITY_TIMEOUT_S=str(settings.visibility_timeout_s),
               CUDA_VISIBLE_DEVICES="" if child.gpu is None else str(child.gpu), PYTHONUNBUFFERED="1")
    if child.gpu is None:
        env.update(cpu_env(child.cpu_threads))
    cmd = processes.python_module("celery", "-A", "worker.app", "worker", "--hostname", child.name,
                                  "--queues", ",".join(child.queues), "--pool", "solo", "--concurrency", "1",
                                  "--loglevel", loglevel, "--without-gossip", "--without-mingle", "--task-events")
    # A new session: Ctrl-C in the terminal reaches the launcher alone, which then stops each child once.
    child.proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    log.info("started %s (pid %d) on %s, queues %s", child.name, child.proc.pid,
             "cpu" if child.gpu is None else f"GPU {child.gpu}", ",".join(child.queues))


def run(settings: Settings, gpus: str = "all", name: str | None = None, queues: tuple[str, ...] = (),
        loglevel: str = "INFO", cpu_threads: int | None = None) -> int:
    """Start and supervise the children until SIGTERM/SIGINT; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] tensorq worker: %(message)s")
    client = connect(settings)
    registry = NodeRegistry(client, Keys(settings.key_prefix))
    children = plan(gpus, name, list(queues))
    for child in children:
        child.cpu_threads = cpu_threads
    # `tensorq up` passes an owner token so it can tell its own nodes from others on a shared broker
    claim_names(children, registry, owner=os.environ.get("TENSORQ_NODE_OWNER") or uuid.uuid4().hex)
    for child in children:
        start(child, settings, loglevel)

    signals: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not signals:
        time.sleep(0.5)
        for child in children:
            if signals or child.given_up:
                continue
            if child.proc is not None and child.proc.poll() is not None:
                restart(child, settings, loglevel, client)
            elif child.proc is None and child.restart_at is not None and time.monotonic() >= child.restart_at:
                child.restart_at = None
                start(child, settings, loglevel)
        if all(c.given_up for c in children):
            log.error("every worker process has been given up; exiting")
            return 1
    return shutdown(children, signals)


def broker_trouble(client: redis.Redis) -> str | None:
    """What keeps the broker from serving now, or None when it serves (then a child that exited crashed on
    its own)."""
    try:
        return broker_errors.probe(client)
    except Exception as e:
        return broker_errors.not_now(e)


def restart(child: Child, settings: Settings, loglevel: str, client: redis.Redis | None = None) -> None:
    code = child.proc.returncode if child.proc else None
    child.proc = None
    now = time.monotonic()
    trouble = broker_trouble(client) if client is not None else None
    if trouble is not None:  # not the child's fault: never counted, never given up
        delay = broker_errors.backoff_s(child.outage_exits)
        child.outage_exits += 1
        child.restart_at = now + delay
        log.warning("%s exited (code %s) while the broker at %s is not serving (%s); restarting it in %.1f s",
                    child.name, code, settings.masked_broker_url, trouble, delay)
        return
    child.outage_exits = 0
    child.restarts = [t for t in (child.restarts or []) if now - t < RESTART_WINDOW_S] + [now]
    if len(child.restarts) > RESTART_LIMIT:
        log.error("%s exited (code %s) %d times within %.0f s; giving up on it", child.name, code,
                  len(child.restarts), RESTART_WINDOW_S)
        child.given_up = True
        return
    log.warning("%s exited (code %s); restarting it", child.name, code)
    start(child, settings, loglevel)


def shutdown(children: list[Child], signals: list[int]) -> int:
    """Each child hands its running job back (SIGUSR2: checkpoint, then back on its queue, to resume on
    another worker) and stops (SIGTERM, Celery's warm shutdown). A second SIGTERM/SIGINT kills them: their
    jobs' leases lapse and live workers take the jobs back within a minute."""
    live = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]
    log.info("stopping: running jobs are checkpointed and handed back to their queues (signal again to kill)")
    for proc in live:
        proc.send_signal(signal.SIGUSR2)
        proc.send_signal(signal.SIGTERM)
    seen, killed = len(signals), False
    while any(proc.poll() is None for proc in live):
        if not killed and len(signals) > seen:
            log.warning("killing the worker processes now")
            for proc in live:
                if proc.poll() is None:
                    proc.kill()
            killed = True
        time.sleep(0.2)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m worker.launcher`: the broker from the environment (`tensorq worker` resolved it), errors as
    one `error:` line and the exit code the CLI gives them."""
    parser = argparse.ArgumentParser(prog="tensorq worker")
    parser.add_argument("--gpus", default="all")
    parser.add_argument("--name")
    parser.add_argument("--queue", dest="queues", action="append", default=[])
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--cpu-threads", type=int)
    opts = parser.parse_args(argv)
    try:
        return run(resolve(), opts.gpus, opts.name, tuple(opts.queues), opts.loglevel.upper(), opts.cpu_threads)
    except TensorqError as e:
        return _fail(str(e), e.exit_code)
    except KeyboardInterrupt:  # before the signal handlers are in place
        return _fail("interrupted", 130)
    except Exception as e:
        if broker_errors.not_now(e) is not None:
            return _fail(last_failure_message(e), BrokerUnreachable.exit_code)
        if os.environ.get("TENSORQ_DEBUG"):
            raise
        return _fail(f"internal error: {type(e).__name__}: {e} (set TENSORQ_DEBUG=1 for the traceback)", 1)


def _fail(message: str, code: int) -> int:
    # as producer/cli.py says it: scrubbed (a library's error may quote the broker's password), first line
    lines = scrub(message).strip().splitlines()
    print(f"error: {lines[0] if lines else 'unknown error'}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
