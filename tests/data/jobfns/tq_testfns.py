"""Job functions for tests/e2e/test_functions.py only, never installed: a worker started with tests/data/jobfns on
its PYTHONPATH offers them (through tq_testfns-0.1.dist-info/entry_points.txt beside this file), a worker
without it does not. Each does one thing a real function might, the odd way."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def fail(ctx: Any) -> dict[str, Any]:
    """`tq-fail`: three steps reported, then the error a user's bad batch would raise."""
    for step in range(3):
        ctx.report(step, loss=1.0 / (step + 1))
    raise ValueError("boom: a bad batch at step 3")


def silent(ctx: Any) -> dict[str, Any]:
    """`tq-silent`: one long call that never reports, so it can only be stopped when it returns."""
    seconds = float(ctx.params["seconds"])
    time.sleep(seconds)
    return {"slept": seconds}


def steps(ctx: Any) -> dict[str, Any]:
    """`tq-steps`: `steps` short steps (`sleep` seconds each), reporting each: cancel stops it at the next."""
    total, pause = int(ctx.params["steps"]), float(ctx.params.get("sleep", 0.01))
    ctx.total = total
    for step in range(total):
        time.sleep(pause)
        ctx.report(step, loss=1.0 / (step + 1))
    return {"ran": total}


class StrictParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(ge=1)  # required: no default


def strict(ctx: Any) -> dict[str, Any]:
    """`tq-strict`: its params are a pydantic model, so `steps=0` is refused before enqueue."""
    for step in range(ctx.params["steps"]):
        ctx.report(step, loss=float(step))
    return {"ran": ctx.params["steps"]}


strict.params = StrictParams  # type: ignore[attr-defined]
