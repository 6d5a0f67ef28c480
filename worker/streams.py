"""A running job's metric series as the store keeps them, for every job that records any (the built-in
training loop and users' job functions alike): each batch appended under the job's lease, each series'
position kept for the next checkpoint, and every series trimmed back to a checkpoint when a job resumes, so
each iteration is in its history exactly once."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from worker.context import WorkerContext


class Streams:
    def __init__(self, ctx: WorkerContext, job_id: str, resumed_at: Mapping[str, str] | None) -> None:
        """`resumed_at`: each series' last entry when the checkpoint resumed from was written (None: a fresh
        start). Whatever came after it (the dead attempt's later points) is dropped now."""
        holder = ctx.lease_holder
        assert holder is not None  # run_job took the lease before any runner starts
        self.ctx, self.job_id, self.holder = ctx, job_id, holder
        self.positions: dict[str, str] = dict(resumed_at or {})  # where the next checkpoint says each stands
        ctx.store.series.trim_after(job_id, self.positions)

    def append(self, name: str, first: int, step: int, values: np.ndarray) -> bool:
        """One batch of a series; False (and the context told) when another worker has taken the job over."""
        entry = self.ctx.store.series.append(self.job_id, name, first, values, step, self.holder)
        if entry is None:
            self.ctx.lease_lost = True  # the job stops at its next iteration or report, writing nothing more
            return False
        self.positions[name] = entry
        return True
