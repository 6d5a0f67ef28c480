"""`submit --wait`'s and `wait`'s progress lines (producer/commands/common.py `progress_printer`), fed batches
directly: no broker, no worker."""

from __future__ import annotations

import numpy as np

from producer.commands.common import progress_printer


def test_progress_lines_stay_regular_across_a_resume(capsys) -> None:
    """Given batches of odd sizes, then a resume that re-sends the history from a checkpoint at 230, the
    printer prints each tenth once, with that iteration's loss."""
    printer = progress_printer("j", {"iterations": 1000})
    losses = np.arange(1000, dtype=np.float64)
    for first, stop in [(0, 120), (120, 301), (301, 342), (342, 410), (230, 700), (700, 1000)]:
        printer(first, losses[first:stop])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"j  iteration {n}/1000  loss {n - 1:.6g}" for n in range(100, 1001, 100)]
