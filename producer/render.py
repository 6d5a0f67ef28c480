"""Everything the CLI prints for people (JSON for scripts is written by commands/common.print_json, and a
history's by `history` below)."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from shared.store import JobRecord

if TYPE_CHECKING:
    import numpy as np

PIPE_WIDTH = 160
STATE_STYLE = {"queued": "yellow", "running": "cyan", "succeeded": "green", "failed": "red", "cancelled": "magenta"}


@functools.cache
def console():
    """Rich's console, one per process (a group's --wait prints a line per job); piped output gets 160 columns
    (not rich's 80), so tables are not cut for scripts."""
    from rich.console import Console

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(highlight=False, width=width)


def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    return f"{duration(time.time() - ts)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def run_time(r: JobRecord) -> float | None:
    if not r.started_at:
        return None
    return (r.finished_at or time.time()) - r.started_at


def final_loss(r: JobRecord) -> str:
    loss = (r.summary or {}).get("final_loss")
    return f"{loss:.6g}" if isinstance(loss, (int, float)) else "-"


def status(r: JobRecord, progress: tuple[int, float] | None = None) -> None:
    """Plain lines, coloured with click (already loaded): `tensorq status` starts fast without rich.
    `progress` is a running job's (iterations done, latest loss)."""
    import click

    lines = [f"job      {r.id}  {click.style(r.state, fg=STATE_STYLE.get(r.state))}",
             f"kind     {r.kind}  queue {r.queue}  priority {r.priority}"
             + (f"  group {r.group}" if r.group else "") + (f"  rerun of {r.rerun_of}" if r.rerun_of else ""),
             f"spec     {spec_line(r.spec)}",
             f"worker   {r.worker or '-'}  device {r.device or '-'}  attempts {r.attempts}",
             f"times    submitted {ago(r.submitted_at)}, ran {duration(run_time(r))}"]
    if progress is not None:
        lines.append(f"progress iteration {progress[0]}/{r.spec.get('iterations', '?')}, loss {progress[1]:.6g}")
    if r.error:
        lines.append(f"error    {click.style(r.error, fg='red')}")
    if r.summary:  # what is absent (resumed_from of a fresh run, cuda on the CPU) is left out
        lines.append("summary  " + ", ".join(f"{k}={_fmt(v)}" for k, v in r.summary.items() if v is not None))
    for line in lines:
        click.echo(line)


def spec_line(spec: dict[str, Any]) -> str:
    if spec.get("kind") == "op":
        def shape(o: dict) -> str:
            return ("randn:" if o.get("source") == "randn" else "") + "x".join(map(str, o.get("shape", []))) or "scalar"
        return f"{spec.get('op')} {shape(spec.get('a', {}))} {shape(spec.get('b', {}))}"
    def field(k: str, v: Any) -> str:
        name = k.replace("_", "-")
        return name if v is True else f"{name}={v}"  # a flag that is on reads as the flag

    # defaults that say nothing (None, a flag that is off) are left out
    return " ".join(field(k, v) for k, v in spec.items() if k != "kind" and v is not None and v is not False)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def jobs_table(records: list[JobRecord]) -> None:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=16)  # users copy ids from here: never cut them
    for col in ("KIND", "STATE", "WORKER", "DEVICE", "AGE", "RAN", "FINAL LOSS"):
        table.add_column(col, justify="right" if col in ("RAN", "FINAL LOSS") else "left")
    for r in records:
        device = (r.summary or {}).get("device") or r.device or "-"
        table.add_row(r.id, r.kind, f"[{STATE_STYLE.get(r.state, '')}]{r.state}[/]", r.worker or "-", device,
                      ago(r.submitted_at), duration(run_time(r)), final_loss(r))
    console().print(table)


def nodes_table(nodes: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not nodes:
        console().print("no live workers")
        return
    table = Table(box=None, header_style="bold")
    for col in ("NODE", "HOST", "DEVICE", "QUEUES", "STATE", "DONE", "HEARTBEAT"):
        table.add_column(col, no_wrap=col == "NODE")
    for n in nodes:
        table.add_row(n.get("name", "?"), n.get("host") or "-", device_text(n), ",".join(n.get("queues") or []) or "-",
                      node_state_text(n), str(n.get("jobs_done") or 0), ago(n.get("seen_at")))
    console().print(table)


def device_text(n: dict[str, Any]) -> str:
    text = n.get("device") or "-"
    if n.get("gpu_index") is not None:
        text += f" (GPU {n['gpu_index']})"
    if n.get("memory_total_bytes"):
        text += f", {n['memory_free_bytes'] / 2**30:.1f}/{n['memory_total_bytes'] / 2**30:.1f} GiB free"
    return text


def node_state_text(n: dict[str, Any]) -> str:
    if n.get("state") != "running":
        return n.get("state") or "-"
    text = f"running {n.get('job')}"
    if n.get("iterations"):
        text += f" at {n.get('iteration') or 0}/{n['iterations']}"
    return text


def tensor(array: np.ndarray, out: IO[str] = sys.stdout) -> None:
    import numpy as np

    with np.printoptions(precision=6, suppress=True, linewidth=100):
        out.write(f"{np.array2string(array)}\n")
    out.write(f"dtype {array.dtype}, shape {'x'.join(map(str, array.shape)) or 'scalar'}\n")


def history(rows: Iterable[tuple[np.ndarray, np.ndarray]], fmt: str, job_id: str, every: int = 1,
            out: IO[str] = sys.stdout) -> None:
    """Streamed: each batch is written as it is read, never the whole history held as text.

    JSON: `{"id", "loss": [...], "first_iteration", "every"}`; a history holds every iteration exactly
    once, so the losses shown are those of iterations first_iteration, first_iteration + every, ...
    """
    if fmt == "json":
        out.write(f'{{"id": {json.dumps(job_id)}, "loss": [')
        sep, first = "", None
        for its, vals in rows:
            if first is None and len(its):
                first = int(its[0])
            if len(vals):  # strict JSON: a non-finite loss is null
                out.write(sep + ", ".join(json.dumps(v) if math.isfinite(v) else "null" for v in vals.tolist()))
                sep = ", "
        out.write(f'], "first_iteration": {json.dumps(first)}, "every": {every}}}\n')
        return
    row = "{},{!r}\n" if fmt == "csv" else "{:>10}  {:.9g}\n"
    out.write("iteration,loss\n" if fmt == "csv" else f"{'iteration':>10}  loss\n")
    for its, vals in rows:
        out.writelines(row.format(i, v) for i, v in zip(its.tolist(), vals.tolist(), strict=True))


def progress_line(job_id: str, done: int, total: int, loss: float) -> str:
    return f"{job_id}  iteration {done}/{total}  loss {loss:.6g}"


def summary(r: JobRecord) -> None:
    """One line on how a job ended (a training job that stopped early too: cancelled, timed out, diverged)."""
    c = console()
    s = r.summary or {}
    state = f"[{STATE_STYLE.get(r.state, '')}]{r.state}[/]"
    if r.kind == "train":
        best = (f"best {_fmt(s['best_loss'])} at iteration {s.get('best_iteration')}"
                if isinstance(s.get("best_loss"), (int, float)) else "no finite loss")
        c.print(f"{state} {r.id}: final loss {final_loss(r)} ({best}), {s.get('iterations')} iterations in "
                f"{duration(s.get('seconds'))} ({_fmt(s.get('iterations_per_s'))} it/s) on {s.get('device')} "
                f"\\[{s.get('worker')}]")
    else:
        c.print(f"{state} {r.id}: {s.get('op')} -> {s.get('dtype')} "
                f"{'x'.join(map(str, s.get('shape', []))) or 'scalar'} on {s.get('device')} \\[{s.get('worker')}]")
