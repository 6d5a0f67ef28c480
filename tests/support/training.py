"""Training jobs several test modules submit, and what they are compared against."""

from __future__ import annotations

import functools

from tests.note_loop import note_loop

# Small enough to run fast, big enough that a run lasts a few seconds on a CPU (recovery, broker trouble).
SIZES = {"batch_size": 64, "input_size": 100, "hidden_size": 50, "output_size": 10}
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in SIZES.items()]

# A run that goes on until something stops it (cancel, a timeout, divergence checks on a stopped run).
LONG = ["--iterations", "2000000", "--batch-size", "8", "--input-size", "16", "--hidden-size", "8",
        "--output-size", "4", "--device", "cpu"]

# A tiny network with manual gradients: a curve over decades in a few thousand fast iterations.
TINY = ["--batch-size", "4", "--input-size", "8", "--hidden-size", "4", "--output-size", "2", "--grad", "manual",
        "--lr", "1e-3", "--device", "cpu"]


@functools.cache  # several tests compare against one run: it is made once (callers only compare it)
def expected_losses(iterations: int, seed: int) -> list[float]:
    """The note's loop run inline at SIZES: what a job's history must equal, value for value."""
    losses, _, _ = note_loop(seed, SIZES["batch_size"], SIZES["input_size"], SIZES["hidden_size"],
                             SIZES["output_size"], iterations=iterations)
    return list(losses)
