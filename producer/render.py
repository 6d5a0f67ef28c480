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

from shared import kinds
from shared.store import JobRecord
from shared.vocab import JobState, NodeState

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

PIPE_WIDTH = 160
STATE_STYLE: dict[str, str] = {JobState.QUEUED: "yellow", JobState.RUNNING: "cyan", JobState.SUCCEEDED: "green",
               JobState.FAILED: "red", JobState.CANCELLED: "magenta"}


@functools.cache
def console() -> Console:
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
    entry = kinds.find(spec.get("kind"))
    return entry.one_line(spec) if entry else json.dumps(spec)  # a kind this version does not know: as stored


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
    if n.get("state") != NodeState.RUNNING:
        return n.get("state") or "-"
    text = f"running {n.get('job')}"
    if n.get("iterations"):
        text += f" at {n.get('iteration') or 0}/{n['iterations']}"
    return text


def tensor(array: np.ndarray, out: IO[str] | None = None) -> None:
    import numpy as np

    out = out or sys.stdout  # per call: a default of sys.stdout would keep the stream of import time

    with np.printoptions(precision=6, suppress=True, linewidth=100):
        out.write(f"{np.array2string(array)}\n")
    out.write(f"dtype {array.dtype}, shape {'x'.join(map(str, array.shape)) or 'scalar'}\n")


def history(rows: Iterable[tuple[np.ndarray, np.ndarray]], fmt: str, job_id: str, every: int = 1,
            out: IO[str] | None = None, metric: str = "loss") -> None:
    """Streamed: each batch is written as it is read, never the whole history held as text.

    JSON: `{"id", "metric", "values": [...], "iterations": [...], "first_iteration", "every"}`, and for the
    loss also `"loss"` (the values again, as before there were other metrics): the losses of iterations
    first_iteration, first_iteration + every, ... The values are written as they are read; the numbers
    (not their text) are kept for the keys that follow.
    """
    out = out or sys.stdout  # per call, as in tensor()
    if fmt == "json":
        out.write(f'{{"id": {json.dumps(job_id)}, "metric": {json.dumps(metric)}, "values": [')
        kept: list[tuple[np.ndarray, np.ndarray]] = []
        for its, vals in rows:
            if len(vals):
                out.write((", " if kept else "") + _json_values(vals))
                kept.append((its, vals))
        out.write('], "iterations": [')
        out.writelines((", " if k else "") + ", ".join(map(str, its.tolist())) for k, (its, _) in enumerate(kept))
        if metric == "loss":
            out.write('], "loss": [')
            out.writelines((", " if k else "") + _json_values(vals) for k, (_, vals) in enumerate(kept))
        out.write("]")
        first = int(kept[0][0][0]) if kept else None
        out.write(f', "first_iteration": {json.dumps(first)}, "every": {every}}}\n')
        return
    row = "{},{!r}\n" if fmt == "csv" else "{:>10}  {:.9g}\n"
    out.write(f"iteration,{metric}\n" if fmt == "csv" else f"{'iteration':>10}  {metric}\n")
    for its, vals in rows:
        out.writelines(row.format(i, v) for i, v in zip(its.tolist(), vals.tolist(), strict=True))


def _json_values(vals: np.ndarray) -> str:
    """Strict JSON: a non-finite value is null."""
    return ", ".join(json.dumps(v) if math.isfinite(v) else "null" for v in vals.tolist())


def progress_line(job_id: str, done: int, total: int, loss: float) -> str:
    return f"{job_id}  iteration {done}/{total}  loss {loss:.6g}"


def summary(r: JobRecord) -> None:
    """One line on how a job ended (a training job that stopped early too: cancelled, timed out, diverged)."""
    c = console()
    s = r.summary or {}
    state = f"[{STATE_STYLE.get(r.state, '')}]{r.state}[/]"
    entry = kinds.find(r.kind)
    told = entry.ended(s) if entry else r.kind
    # a run measured in iterations says how fast it went
    rate = f" in {duration(s.get('seconds'))} ({_fmt(s.get('iterations_per_s'))} it/s)" \
        if "iterations_per_s" in s else ""
    c.print(f"{state} {r.id}: {told}{rate} on {s.get('device')} \\[{s.get('worker')}]")
