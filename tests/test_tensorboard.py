"""A job's series written as a TensorBoard run without Redis (producer/tensorboard.py), read back with
TensorBoard's own EventAccumulator: every point once and exact in float32, the spec as the HParams plugin's
session, and a re-export replacing the run rather than adding to it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from producer.tensorboard import hparams, write_run


@dataclass
class ReadBack:
    """A run as TensorBoard reads it."""

    points: dict[str, list[tuple[int, float]]]  # tag -> (step, value) in file order
    hparams: dict[str, Any]  # the session's start: hparam -> its value
    status: str  # the session's end
    files: list[Path]


def read_run(path: Path) -> ReadBack:
    """Scalars come back as `scalars` (simple values) or as `tensors` (newer writers' form): either is read."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    points = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
    for t in tags["tensors"]:
        assert acc.SummaryMetadata(t).plugin_data.plugin_name == "scalars", t
        points[t] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(t)]
    plugin = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(plugin[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(plugin[metadata.SESSION_END_INFO_TAG])
    values = {name: getattr(v, v.WhichOneof("kind")) for name, v in start.hparams.items()}
    return ReadBack(points, values, api_pb2.Status.Name(end.status), sorted(path.glob("*tfevents*")))


def assert_same_points(back: ReadBack, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Each point of each series once, at its iteration, equal as float32 (NaN as NaN)."""
    assert set(back.points) == {name for name, (its, _) in series.items() if len(its)}
    for name, (its, vals) in series.items():
        if not len(its):
            continue
        steps = [s for s, _ in back.points[name]]
        assert steps == [int(i) for i in its], name
        got = np.array([v for _, v in back.points[name]], dtype=np.float32)
        assert np.array_equal(got, np.asarray(vals).astype(np.float32), equal_nan=True), name


def f32(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float32).astype(np.float64)  # as a float32 job's series reads back


def series_of(n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    its = np.arange(n, dtype=np.int64)
    loss = f32(list(np.linspace(3.0, 0.1, n)))
    every10 = its[::10]
    return {"loss": (its, loss), "val_loss": (every10, f32([1 / (1 + i) for i in every10])),
            "val_accuracy": (every10, f32([i / n for i in every10]))}


def test_every_series_reads_back_point_for_point(tmp_path: Path) -> None:
    series = series_of(250)
    series["loss"][1][[3, 7]] = [np.nan, np.inf]  # a run allowed to go non-finite keeps them
    run = write_run(tmp_path, "job1", {"kind": "train", "lr": 1e-3}, series, "succeeded", 100.0, 160.0)
    assert run.path == tmp_path / "job1" and run.points == {"loss": 250, "val_loss": 25, "val_accuracy": 25}
    assert run.total == 300
    back = read_run(run.path)
    assert_same_points(back, series)
    assert back.status == "STATUS_SUCCESS" and len(back.files) == 1


def test_the_spec_becomes_hparams_typed_flattened_and_without_none(tmp_path: Path) -> None:
    spec = {"kind": "train", "lr": 0.01, "iterations": 300, "fast": False, "tf32": True, "timeout": None,
            "data": {"name": "digits", "sha256": "ab12", "split": {"val_fraction": 0.25}}, "shape": [2, 3]}
    assert hparams(spec) == {"kind": "train", "lr": 0.01, "iterations": 300, "fast": False, "tf32": True,
                             "data.name": "digits", "data.sha256": "ab12", "data.split.val_fraction": 0.25}
    back = read_run(write_run(tmp_path, "j", spec, series_of(20), "cancelled").path)
    assert back.hparams == {"kind": "train", "lr": 0.01, "iterations": 300.0, "fast": False, "tf32": True,
                            "data.name": "digits", "data.sha256": "ab12", "data.split.val_fraction": 0.25}
    assert isinstance(back.hparams["fast"], bool)  # a flag stays a flag, not the number 0
    assert back.status == "STATUS_UNKNOWN"


@pytest.mark.parametrize("state,status", [("succeeded", "STATUS_SUCCESS"), ("failed", "STATUS_FAILURE"),
                                          ("running", "STATUS_RUNNING"), ("queued", "STATUS_RUNNING"),
                                          ("cancelled", "STATUS_UNKNOWN"), (None, "STATUS_UNKNOWN")])
def test_the_session_ends_with_the_jobs_state(tmp_path: Path, state: str | None, status: str) -> None:
    assert read_run(write_run(tmp_path, "j", {}, series_of(3), state).path).status == status


def test_a_re_export_replaces_the_run_and_leaves_other_files(tmp_path: Path) -> None:
    first = write_run(tmp_path, "j", {"lr": 1.0}, series_of(40))
    (first.path / "notes.txt").write_text("mine")
    longer = series_of(60)  # the job went on meanwhile
    write_run(tmp_path, "j", {"lr": 1.0}, longer)
    again = write_run(tmp_path, "j", {"lr": 1.0}, longer)
    back = read_run(again.path)
    assert len(back.files) == 1
    assert_same_points(back, longer)
    assert (again.path / "notes.txt").read_text() == "mine"


def test_a_series_without_points_is_left_out(tmp_path: Path) -> None:
    series = {"loss": (np.arange(5), f32([1, 2, 3, 4, 5])), "val_loss": (np.empty(0, np.int64), np.empty(0))}
    run = write_run(tmp_path, "j", {}, series)
    assert run.points == {"loss": 5}
    assert set(read_run(run.path).points) == {"loss"}


def test_a_write_that_fails_leaves_the_earlier_run_as_it_was(tmp_path: Path) -> None:
    before = write_run(tmp_path, "j", {}, series_of(30))
    files = sorted(before.path.iterdir())
    broken = {"loss": (np.arange(2), np.array(["x", "y"], dtype=object))}
    with pytest.raises(ValueError):
        write_run(tmp_path, "j", {}, broken)
    assert sorted(before.path.iterdir()) == files
    assert_same_points(read_run(before.path), series_of(30))


def test_a_float64_series_is_rounded_to_float32(tmp_path: Path) -> None:
    """TensorBoard's default (Rust) loader drops float64 scalars: what it can show is float32."""
    series = {"loss": (np.arange(3), np.array([0.1, 1 / 3, 2.0 ** -30]))}
    back = read_run(write_run(tmp_path, "j", {"dtype": "float64"}, series).path)
    assert_same_points(back, series)
