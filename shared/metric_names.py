"""The metrics tensorq records, by name: which way is better, what each is, and which one a job's result is told
by. Light (no numpy, no Redis): the CLI ranks and labels by it, and worker/loop.py's METRICS measures them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOSS = "loss"  # the series every training job has: its step's own output, every iteration
VAL_LOSS, ACCURACY, VAL_ACCURACY = "val_loss", "accuracy", "val_accuracy"


@dataclass(frozen=True)
class Known:
    """A metric tensorq records (worker/loop.py's METRICS measures them): which way is better, and what it is."""

    higher_is_better: bool
    what: str


# Every metric the loop may record, the light half (the CLI ranks and labels by it without torch); a metric
# not named here (a user's own) counts as lower-is-better, as a loss does.
KNOWN: dict[str, Known] = {
    LOSS: Known(False, "the training step's loss, summed over its rows"),
    VAL_LOSS: Known(False, "the loss summed over the held-out rows"),
    ACCURACY: Known(True, "the share of training rows classified right"),
    VAL_ACCURACY: Known(True, "the share of held-out rows classified right"),
}


def higher_is_better(name: str) -> bool:
    return name in KNOWN and KNOWN[name].higher_is_better


# What a one-line ending, `group` and `compare` show beside the loss: the first of these a job has.
HEADLINE = (VAL_ACCURACY, VAL_LOSS, ACCURACY)


def headline(summary: Mapping[str, Any] | None) -> str | None:
    """The metric a job's summary (its `metrics`: name -> {last, best, best_iteration}) is best told by."""
    have = (summary or {}).get("metrics") or {}
    return next((name for name in HEADLINE if name in have), None)


def summarized(summary: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    """{last, best, best_iteration} of one metric in a job's summary ({} when it has none)."""
    found = ((summary or {}).get("metrics") or {}).get(name)
    return found if isinstance(found, Mapping) else {}
