"""Live progress bars for running jobs, fed by blocking reads of their loss streams (no polling storm)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shared import defaults
from shared.protocol import Kind
from shared.store import JobRecord, JobStore

QUEUE_SCAN_LIMIT = 10_000  # queue positions are looked up among this many waiting messages at most
POSITION_REFRESH_S = 2.0


def queue_position(store: JobStore, queue: str, job_id: str) -> int | None:
    """1 when the job is next out of its Celery queue (a Redis list consumed from the right), else its place."""
    waiting = store.redis.lrange(queue, -QUEUE_SCAN_LIMIT, -1)
    needle = job_id.encode()
    for k, raw in enumerate(reversed(waiting), start=1):
        if needle in raw:  # the task id is in the message's plain-JSON headers
            return k
    return None


@dataclass
class Tracked:
    record: JobRecord
    after: str = "0-0"  # last stream entry read
    done: int = 0
    last: float = float("nan")
    best: float = float("inf")
    task_id: int = 0
    position: tuple[float, int | None] = (0.0, None)  # (when looked up, place in queue)
    speed: list[tuple[float, int]] = field(default_factory=list)  # (time, done) samples for it/s

    @property
    def total(self) -> int:
        return int(self.record.spec.get("iterations") or 1) if self.record.kind == Kind.TRAIN.value else 1

    def add(self, first: int, values: np.ndarray) -> None:
        self.done = first + len(values)
        self.last = float(values[-1])
        self.best = min(self.best, float(np.nanmin(values)) if np.isfinite(values).any() else self.best)
        now = time.monotonic()
        self.speed = [s for s in self.speed if now - s[0] < 10] + [(now, self.done)]

    def rate(self) -> float | None:
        if len(self.speed) < 2 or self.speed[-1][0] == self.speed[0][0]:
            s = self.record.summary or {}
            return s.get("iterations_per_s")
        (t0, d0), (t1, d1) = self.speed[0], self.speed[-1]
        return (d1 - d0) / (t1 - t0)


def describe(t: Tracked, store: JobStore) -> str:
    r = t.record
    if r.state == "queued":
        if time.monotonic() - t.position[0] > POSITION_REFRESH_S:  # an LRANGE: not on every wake-up
            t.position = (time.monotonic(), queue_position(store, r.queue, r.id))
        pos = t.position[1]
        where = f"#{pos} in queue {r.queue}" if pos else f"in queue {r.queue}"
        return f"{r.id} [yellow]waiting[/] ({where})"
    text = f"{r.id} [{_style(r.state)}]{r.state}[/]"
    if r.kind == Kind.TRAIN.value and t.done:
        rate = t.rate()
        eta = f" eta {(t.total - t.done) / rate:.0f}s" if rate and r.state == "running" else ""
        its = f" {rate:,.0f} it/s" if rate else ""
        text += f" {t.done}/{t.total}{its}{eta} loss {t.last:.6g} best {t.best:.6g}"
    if r.error:
        from rich.markup import escape

        text += f" [red]{escape(r.error)}[/]"
    return text


def _style(state: str) -> str:
    from producer.render import STATE_STYLE

    return STATE_STYLE.get(state, "")


def watch(store: JobStore, job_ids: list[str], console=None) -> list[JobRecord]:
    """Draw one bar per job until every job has ended; returns their final records.

    Ctrl-C (KeyboardInterrupt) propagates to the caller: only the watching stops, never the jobs.
    """
    from rich.progress import BarColumn, Progress, TextColumn

    tracked = {j: Tracked(store.require(j)) for j in job_ids}
    cursor = store.finished_cursor()
    with Progress(BarColumn(bar_width=30), TextColumn("{task.description}"), console=console,
                  refresh_per_second=4) as progress:
        for t in tracked.values():
            t.task_id = progress.add_task(describe(t, store), total=t.total)
        while True:
            for t in tracked.values():
                t.record = store.require(t.record.id)
                if t.record.finished and t.record.kind == Kind.TRAIN.value:
                    for entry_id, first, values in store.loss_chunks(t.record.id, t.after):
                        t.after = entry_id  # read once, not on every wake-up
                        t.add(first, values)
                completed = t.total if t.record.state == "succeeded" else t.done
                progress.update(t.task_id, completed=completed, description=describe(t, store))
            if all(t.record.finished for t in tracked.values()):
                return [t.record for t in tracked.values()]
            # one blocking read over every live training job's losses and the stream of ended jobs
            live = {j: t.after for j, t in tracked.items()
                    if t.record.kind == Kind.TRAIN.value and not t.record.finished}
            losses, ended = store.wait_events(live, cursor, defaults.WAIT_BLOCK_MS)
            for job_id, entry_id, first, values in losses:
                tracked[job_id].after = entry_id
                tracked[job_id].add(first, values)
            if ended:
                cursor = ended[-1][0]
