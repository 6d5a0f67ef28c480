"""Slices of a metric series, read as a stream of batches: never the whole series held at once unless a
caller asks for arrays. Slices are by iteration number, so a metric measured every 10 iterations is cut
where the loss would be."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from shared.errors import BadInput
from shared.metric_names import LOSS
from shared.store import JobStore

Rows = Iterator[tuple[np.ndarray, np.ndarray]]  # (iterations, values) per batch


@dataclass(frozen=True)
class Slice:
    start: int = 0  # first iteration kept
    stop: int | None = None  # one past the last kept; None = to the end
    every: int = 1  # keep iterations divisible by this
    tail: int | None = None  # then keep only the last this many

    @classmethod
    def parse(cls, range_text: str | None = None, every: int = 1, tail: int | None = None) -> Slice:
        start, stop = 0, None
        if range_text:
            m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", range_text)
            if not m:
                raise BadInput(f"--range: expected A:B such as 100:200, :500 or 1000: (got {range_text!r})")
            start = int(m.group(1) or 0)
            stop = int(m.group(2)) if m.group(2) else None
            if stop is not None and stop < start:
                raise BadInput(f"--range: {start}:{stop} ends before it starts")
        if every < 1:
            raise BadInput("--every must be at least 1")
        if tail is not None and tail < 1:
            raise BadInput("--tail must be at least 1")
        return cls(start, stop, every, tail)


def rows(store: JobStore, job_id: str, cut: Slice = Slice(), metric: str = LOSS) -> Rows:
    """Batches of (iterations, values) of one series within the slice, oldest first."""
    if cut.tail is not None and cut.start == 0 and cut.stop is None and cut.every == 1:
        chunks = iter(store.series.last_chunks(job_id, metric, cut.tail))  # read only the newest entries
    else:
        chunks = store.series.chunks(job_id, metric)
    return sliced(((c.iterations, c.values) for c in chunks), cut)


def sliced(batches: Iterable[tuple[np.ndarray, np.ndarray]], cut: Slice) -> Rows:
    """The batches (oldest first, iterations increasing) cut to the slice: the iterations in range and
    divisible by `every`, then the last `tail` of those. Holds at most `tail` values beyond one batch."""
    selected = _select(batches, cut)
    if cut.tail is None:
        yield from selected
        return
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    have = 0
    for its, vals in selected:
        kept.append((its, vals))
        have += len(vals)
        while kept and have - len(kept[0][1]) >= cut.tail:
            have -= len(kept.pop(0)[1])
    excess = have - cut.tail
    for k, (its, vals) in enumerate(kept):
        yield (its[excess:], vals[excess:]) if k == 0 and excess > 0 else (its, vals)


def _select(batches: Iterable[tuple[np.ndarray, np.ndarray]], cut: Slice) -> Rows:
    for its, values in batches:
        if not len(its):
            continue
        if cut.stop is not None and its[0] >= cut.stop:
            return
        mask = (its >= cut.start) & (its % cut.every == 0)
        if cut.stop is not None:
            mask &= its < cut.stop
        if mask.any():
            yield its[mask], values[mask]


def as_arrays(store: JobStore, job_id: str, cut: Slice = Slice(), metric: str = LOSS) -> tuple[np.ndarray, np.ndarray]:
    parts = list(rows(store, job_id, cut, metric))
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def latest(store: JobStore, job_id: str, metric: str = LOSS) -> tuple[int, float] | None:
    """(where the series stands, its latest value) from the newest entry; for the loss, (iterations done,
    latest loss). None before the first flush."""
    newest = store.series.last(job_id, metric)
    if newest is None or not len(newest.values):
        return None
    return newest.end, float(newest.values[-1])
