"""Metric series without Redis: an entry's packing and unpacking, metric names, and which series a record has."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from shared import series
from shared.errors import BadInput
from shared.keys import Keys


@dataclass
class Record:
    id: str = "j1"
    kind: str = "train"
    metrics: list[str] = field(default_factory=list)


def as_stored(fields: dict[str, int | str | bytes]) -> dict[bytes, bytes]:
    """What Redis hands back for an entry written with these fields."""
    return {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()}


def test_an_every_iteration_float32_entry_has_no_step_field() -> None:
    """Given a float32 batch at step 1, the entry is `i`, `t`, `d` as before there were other metrics: the
    loss histories stored then read back unchanged, and a point costs its 4 bytes."""
    values = np.array([3.5, 2.25, np.inf, np.nan], dtype=np.float32)
    fields = series.pack(100, 1, values)
    assert list(fields) == ["i", "t", "d"] and fields["t"] == "f4" and len(fields["d"]) == 4 * len(values)
    chunk = series.unpack("1-0", as_stored(fields))
    assert chunk.first == 100 and chunk.step == 1 and chunk.values.dtype == np.float64
    np.testing.assert_array_equal(chunk.values, values.astype(np.float64))
    assert chunk.iterations.tolist() == [100, 101, 102, 103] and chunk.end == 104


def test_a_strided_float64_entry_keeps_its_step_and_every_bit() -> None:
    values = np.array([0.1, 1e-300, -2.0])
    fields = series.pack(30, 10, values)
    assert fields["s"] == 10 and fields["t"] == "f8"
    chunk = series.unpack("1-1", as_stored(fields))
    assert chunk.values.tobytes() == values.tobytes()
    assert chunk.iterations.dtype == np.int64 and chunk.iterations.tolist() == [30, 40, 50] and chunk.end == 60


def test_an_old_loss_entry_reads_as_step_one() -> None:
    old = {b"i": b"7", b"t": b"f4", b"d": np.array([1.0, 2.0], dtype="<f4").tobytes()}
    chunk = series.unpack("5-0", old)
    assert (chunk.entry_id, chunk.first, chunk.step, chunk.values.tolist()) == ("5-0", 7, 1, [1.0, 2.0])


@pytest.mark.parametrize("name", ["loss", "val_loss", "a", "acc2", "x" * 32])
def test_good_metric_names(name: str) -> None:
    assert series.check_name(name) == name


@pytest.mark.parametrize("name", ["", "Loss", "2acc", "_x", "val-loss", "x" * 33, "a b", "a:b"])
def test_bad_metric_names_are_one_line(name: str) -> None:
    with pytest.raises(BadInput, match="metric name") as e:
        series.check_name(name)
    assert "\n" not in str(e.value)


def test_the_loss_keeps_its_key_and_other_metrics_get_their_own() -> None:
    keys = Keys("tq:")
    assert keys.series("j1", "loss") == "tq:job:j1:loss"
    assert keys.series("j1", "val_loss") == "tq:job:j1:metric:val_loss"


def test_a_records_series_come_from_its_fields() -> None:
    assert series.names_in(["state", "series:val_loss", "artifact:weights", "series:loss"]) == ["loss", "val_loss"]


def test_a_training_job_always_has_its_loss_first() -> None:
    """Given a training job whose record names no series (queued, or stored before records named them), it
    has the loss; given others, the loss comes first."""
    assert series.names(Record()) == ["loss"]
    assert series.names(Record(metrics=["accuracy", "loss", "val_loss"])) == ["loss", "accuracy", "val_loss"]
    assert series.names(Record(kind="op")) == []


def test_an_unknown_metric_names_those_the_job_has() -> None:
    assert series.require(Record(metrics=["loss", "val_loss"]), "val_loss") == "val_loss"
    with pytest.raises(BadInput) as e:
        series.require(Record(metrics=["loss", "val_loss"]), "accuracy")
    assert str(e.value) == "job j1 has no metric 'accuracy' (it has: loss, val_loss)"
    with pytest.raises(BadInput, match=r"\(it has: none yet\)"):
        series.require(Record(kind="op"), "loss")
