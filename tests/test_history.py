"""History slices without Redis: `--range`, `--every` and `--tail` on batches of (iterations, values), for a
series measured every iteration and for one measured every 10."""

from __future__ import annotations

import numpy as np
import pytest

from producer.history import Slice, sliced
from shared.errors import BadInput


def batches(first: int, stop: int, step: int = 1, size: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    """A series at iterations first, first + step, ... below stop, in batches of `size` points; each value is
    its iteration as a float, so a slice's values say which iterations it kept."""
    its = np.arange(first, stop, step, dtype=np.int64)
    return [(its[k:k + size], its[k:k + size].astype(np.float64)) for k in range(0, len(its), size)]


def cut(parts: list[tuple[np.ndarray, np.ndarray]], s: Slice) -> list[int]:
    kept = list(sliced(iter(parts), s))
    for its, vals in kept:
        assert its.tolist() == vals.tolist()
    return [int(i) for its, _ in kept for i in its]


@pytest.mark.parametrize("text,start,stop", [("100:200", 100, 200), (":500", 0, 500), ("1000:", 1000, None),
                                             (" 3 : 9 ", 3, 9), (":", 0, None)])
def test_a_range_parses(text: str, start: int, stop: int | None) -> None:
    assert Slice.parse(text) == Slice(start, stop)


@pytest.mark.parametrize("args,message", [(("9:3",), "ends before it starts"), (("a:b",), "expected A:B"),
                                          ((None, 0), "--every must be at least 1"),
                                          ((None, 1, 0), "--tail must be at least 1")])
def test_a_bad_slice_is_one_line(args: tuple, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        Slice.parse(*args)


def test_no_slice_keeps_everything_in_batches() -> None:
    parts = batches(0, 30)
    assert cut(parts, Slice()) == list(range(30))
    assert [len(its) for its, _ in sliced(iter(parts), Slice())] == [7, 7, 7, 7, 2]


def test_range_every_and_tail_combine_in_that_order() -> None:
    whole = list(range(50))
    parts = batches(0, 50)
    assert cut(parts, Slice(10, 20)) == whole[10:20]
    assert cut(parts, Slice(every=5)) == whole[::5]
    assert cut(parts, Slice(10, 40, 5)) == [10, 15, 20, 25, 30, 35]
    assert cut(parts, Slice(10, 40, 5, tail=2)) == [30, 35]
    assert cut(parts, Slice(tail=3)) == [47, 48, 49]
    assert cut(parts, Slice(tail=100)) == whole


def test_a_tail_across_batches_keeps_exactly_its_count() -> None:
    """Given batches of 7, a tail of 9 spans two batches and the first is cut inside."""
    assert cut(batches(0, 30), Slice(tail=9)) == list(range(21, 30))


def test_a_strided_series_is_sliced_by_iteration_numbers() -> None:
    """Given a metric measured every 10 iterations, --range and --every speak of iterations, not of points."""
    parts = batches(0, 200, step=10, size=4)
    assert cut(parts, Slice()) == list(range(0, 200, 10))
    assert cut(parts, Slice(35, 95)) == [40, 50, 60, 70, 80, 90]
    assert cut(parts, Slice(every=30)) == [0, 30, 60, 90, 120, 150, 180]
    assert cut(parts, Slice(every=7)) == [0, 70, 140]
    assert cut(parts, Slice(100, None, 20, tail=2)) == [160, 180]


def test_a_resumed_series_that_does_not_start_at_zero() -> None:
    assert cut(batches(230, 260), Slice(0, 240)) == list(range(230, 240))
    assert cut(batches(230, 260), Slice(300)) == []
