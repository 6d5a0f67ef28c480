"""compare's table without Redis: how each job ended (or where a running one stands), the spec fields that
set them apart, and the column a metric other than the loss adds."""

from __future__ import annotations

from typing import Any

from producer.compare import table
from shared.store import JobRecord


def job(job_id: str, state: str = "succeeded", summary: dict[str, Any] | None = None, **spec: Any) -> JobRecord:
    base = {"kind": "train", "iterations": 100, "lr": 1e-6, "seed": 0}
    return JobRecord(job_id, "train", state, "cpu", {**base, **spec}, 0.0, device="cpu", summary=summary)


ENDED = {"final_loss": 1.5, "best_loss": 1.25, "iterations": 100, "seconds": 2.0, "iterations_per_s": 50.0,
         "device": "cpu (x86_64)"}


def test_rows_show_how_each_ended_and_only_the_fields_that_differ() -> None:
    rows, differing = table([job("a", summary=ENDED, lr=1e-6), job("b", summary={**ENDED, "final_loss": 2.0}, lr=1e-5)])
    assert differing == ["lr"]
    assert rows[0] == {"id": "a", "state": "succeeded", **ENDED, "lr": 1e-6}
    assert rows[1]["final_loss"] == 2.0 and rows[1]["lr"] == 1e-5


def test_identical_specs_differ_in_nothing() -> None:
    rows, differing = table([job("a", summary=ENDED), job("b", summary=ENDED)])
    assert differing == [] and set(rows[0]) == {"id", "state", *ENDED}


def test_a_running_job_shows_its_progress_as_its_final_loss() -> None:
    rows, _ = table([job("a", summary=ENDED), job("r", state="running")], progress={"r": (40, 3.5)})
    assert rows[1] == {"id": "r", "state": "running", "final_loss": 3.5, "best_loss": None, "iterations": 40,
                       "seconds": None, "iterations_per_s": None, "device": "cpu"}


def test_a_queued_job_without_progress_has_nothing_yet() -> None:
    rows, _ = table([job("q", state="queued")], progress={})
    assert rows[0]["final_loss"] is None and rows[0]["iterations"] is None


def test_iterations_planned_and_run_are_kept_apart_when_they_differ() -> None:
    rows, differing = table([job("a", summary=ENDED, iterations=100), job("b", summary=ENDED, iterations=200)])
    assert differing == ["iterations"]
    assert rows[1]["iterations"] == 200 and rows[1]["iterations_done"] == 100


def test_another_metric_adds_its_latest_value() -> None:
    rows, _ = table([job("a", summary=ENDED), job("b", summary=ENDED)], metric="val_loss", last={"a": 0.5})
    assert rows[0]["last_val_loss"] == 0.5 and rows[1]["last_val_loss"] is None
    assert "last_loss" not in table([job("a", summary=ENDED)])[0][0]
