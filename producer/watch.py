"""Live progress bars for running jobs, fed by blocking reads of their metric series' streams (no polling
storm): the loss makes the bar; every other metric shows its latest value."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared import broker_errors, defaults, kinds, series
from shared.metric_names import LOSS
from shared.protocol import queue_for
from shared.series import Chunk
from shared.store import JobRecord, JobStore
from shared.vocab import JobState, Priority

QUEUE_SCAN_LIMIT = 10_000  # queue positions are looked up among this many waiting messages at most
POSITION_REFRESH_S = 2.0
SPEED_WINDOW_S = 10.0  # it/s is measured over the batches of about this long
BURST_S = 0.05  # batches read this close together arrived together
MIN_SPAN_S = 1.0  # no it/s until the live batches span this long
WIDE_COLUMNS = 120  # narrower terminals get a short bar and 4-digit losses
BAR_MIN_COLUMNS = 100  # ... and below this, no bar: the text (i/N, it/s, ETA, loss) is the progress


def queue_position(store: JobStore, queue: str, job_id: str, priority: str = Priority.NORMAL.value) -> int | None:
    """1 when the job is next out of its Celery queue (a Redis list consumed from the right), else its place.
    Workers empty a queue's higher levels first, so every job waiting in them counts as ahead."""
    base = queue.removesuffix(f".{priority}") if priority != Priority.NORMAL.value else queue
    ahead = 0
    for level in Priority:  # high, normal, low: the order workers take them in
        name = queue_for(base, level.value)
        if name != queue:
            ahead += store.redis.llen(name)
            continue
        waiting = store.redis.lrange(queue, -QUEUE_SCAN_LIMIT, -1)
        needle = job_id.encode()
        for k, raw in enumerate(reversed(waiting), start=1):
            if needle in raw:  # the task id is in the message's plain-JSON headers
                return ahead + k
        return None
    return None


@dataclass
class Tracked:
    record: JobRecord
    after: dict[str, str] = field(default_factory=dict)  # metric -> last stream entry read
    latest: dict[str, float] = field(default_factory=dict)  # metric (not the loss) -> its latest value
    done: int = 0
    last: float = float("nan")
    best: float = float("inf")
    task_id: int = 0
    position: tuple[float, int | None] = (0.0, None)  # (when looked up, place in queue)
    speed: list[tuple[float, int]] = field(default_factory=list)  # (time, done) samples for it/s

    @property
    def total(self) -> int:
        entry = kinds.find(self.record.kind)
        return entry.progress_total(self.record.spec) if entry else 1

    def add(self, metric: str, chunk: Chunk) -> None:
        self.after[metric] = chunk.entry_id  # read once, not on every wake-up
        if not len(chunk.values):
            return
        if metric != LOSS:
            self.latest[metric] = float(chunk.values[-1])
            return
        values = chunk.values
        self.done = chunk.end
        self.last = float(values[-1])
        finite = values[np.isfinite(values)]
        self.best = min(self.best, float(finite.min())) if finite.size else self.best
        now = time.monotonic()
        recent = [s for s in self.speed if now - s[0] < SPEED_WINDOW_S]
        if recent and now - recent[-1][0] < BURST_S:  # read together (a backlog): one sample, as of now
            recent.pop()
        self.speed = [*recent, (now, self.done)]

    def rate(self) -> float | None:
        """it/s: an ended job's own figure; a running one's from the batches seen arrive live, once they
        span a second (the backlog read when watching starts arrives at once and says nothing of speed)."""
        if self.record.finished:
            return (self.record.summary or {}).get("iterations_per_s")
        if len(self.speed) < 2 or self.speed[-1][0] - self.speed[0][0] < MIN_SPAN_S:
            return None
        (t0, d0), (t1, d1) = self.speed[0], self.speed[-1]
        return (d1 - d0) / (t1 - t0)


def describe(t: Tracked, store: JobStore, compact: bool = False) -> str:
    """A bar's text: id, state, i/N, it/s, ETA, loss, best. `compact` (a narrow terminal) writes the losses
    with 4 significant digits; the end of the line is what an even narrower one cuts (it/s and ETA stay)."""
    r = t.record
    if r.state == JobState.QUEUED:
        if time.monotonic() - t.position[0] > POSITION_REFRESH_S:  # an LRANGE: not on every wake-up
            t.position = (time.monotonic(), queue_position(store, r.queue, r.id, r.priority))
        pos = t.position[1]
        where = f"#{pos} in queue {r.queue}" if pos else f"in queue {r.queue}"
        return f"{r.id} [yellow]waiting[/] ({where})"
    text = f"{r.id} [{_style(r.state)}]{r.state}[/]"
    if kinds.has_curves(r.kind) and t.done:
        rate = t.rate()
        eta = f" eta {_eta((t.total - t.done) / rate)}" if rate and t.total and r.state == JobState.RUNNING else ""
        its = f" {rate:,.0f} it/s" if rate else ""
        digits = 4 if compact else 6
        done = f"{t.done}/{t.total}" if t.total else f"step {t.done}"  # a job function's total is its own
        text += f" {done}{its}{eta} loss {t.last:.{digits}g} best {t.best:.{digits}g}"
        text += "".join(f" {name} {value:.{digits}g}" for name, value in sorted(t.latest.items()))
    if r.error:
        from rich.markup import escape

        text += f" [red]{escape(r.error)}[/]"
    return text


def _eta(seconds: float) -> str:
    from producer.render import duration

    return f"{seconds:.0f}s" if seconds < 60 else duration(seconds)


def _chunks(store: JobStore, job_id: str, name: str, after: str) -> list[Chunk]:
    """A series' entries after `after`, read whole (so a read an outage broke is made again from the start)."""
    return list(store.series.chunks(job_id, name, after))


def _style(state: str) -> str:
    from producer.render import STATE_STYLE

    return STATE_STYLE.get(state, "")


def watch(store: JobStore, job_ids: list[str], console: Any = None) -> list[JobRecord]:
    """Draw one bar per job until every job has ended; returns their final records.

    Ctrl-C (KeyboardInterrupt) propagates to the caller: only the watching stops, never the jobs.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn
    from rich.table import Column

    tracked = {j: Tracked(store.require(j)) for j in job_ids}
    cursor = store.finished_cursor()
    ride = broker_errors.RideOut()  # through a failover, too
    width = (console or Console()).width
    compact = width < WIDE_COLUMNS
    # the bar gives way first on a narrow terminal, then the text's end (never a wrapped, garbled line)
    bar = [] if width < BAR_MIN_COLUMNS else [BarColumn(bar_width=30 if not compact else 10)]
    text = TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis"))
    with Progress(*bar, text, console=console, refresh_per_second=4) as progress:
        for t in tracked.values():
            t.task_id = progress.add_task(describe(t, store, compact), total=t.total)
        while True:
            for t in tracked.values():
                t.record = ride(store.require, t.record.id)
                if t.record.finished and kinds.has_curves(t.record.kind):
                    for name in series.names(t.record):
                        for chunk in ride(_chunks, store, t.record.id, name, t.after.get(name, "0-0")):
                            t.add(name, chunk)
                completed = t.total if t.record.state == JobState.SUCCEEDED else t.done
                progress.update(TaskID(t.task_id), completed=completed, description=describe(t, store, compact))
            if all(t.record.finished for t in tracked.values()):
                return [t.record for t in tracked.values()]
            # one blocking read over every live training job's series and the stream of ended jobs
            live = {(j, name): t.after.get(name, "0-0") for j, t in tracked.items()
                    if kinds.has_curves(t.record.kind) and not t.record.finished for name in series.names(t.record)}
            batches, ended = ride(store.wait_events, live, cursor, defaults.WAIT_BLOCK_MS)
            for job_id, name, chunk in batches:
                tracked[job_id].add(name, chunk)
            if ended:
                cursor = ended[-1][0]
