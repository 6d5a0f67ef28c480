"""A job's metric series as a TensorBoard run (`tensorq export --tensorboard`, the optional `tensorq[tensorboard]`
extra): each series as scalars (tag = its name, step = iteration), the spec as the HParams plugin's
hyperparameters. Pure: no Redis. Written with TensorBoard's own event writer and protos, not torch's
`SummaryWriter`: the producer may have no torch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from shared.vocab import JobState

Points = tuple[np.ndarray, np.ndarray]  # (iterations, values)
HParam = str | bool | int | float
# TensorBoard reads every file of a run whose name holds this (its IsTensorFlowEventsFile)
EVENT_FILE_MARK = "tfevents"
# The writer hands events to a thread through a bounded queue: once full, every event waits on the thread
# (14 s for 200,000 points, against 6 s when the queue is drained at each fill by a flush).
QUEUE_EVENTS = 4096
# The hparams dashboard's statuses: a cancelled job neither succeeded nor failed; a queued one that has
# points was handed back and will resume.
STATUS = {JobState.SUCCEEDED.value: "STATUS_SUCCESS", JobState.FAILED.value: "STATUS_FAILURE",
          JobState.RUNNING.value: "STATUS_RUNNING", JobState.QUEUED.value: "STATUS_RUNNING"}


@dataclass(frozen=True)
class Run:
    """What `write_run` wrote: the run's folder and the points of each series there."""

    path: Path
    points: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.points.values())


def hparams(spec: Mapping[str, Any], prefix: str = "") -> dict[str, HParam]:
    """A spec's scalar fields; a nested dict's (a `data` reference) as `data.name`, ...; None, lists and
    other values have no hparam type and are left out."""
    found: dict[str, HParam] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.update(hparams(value, f"{name}."))
        elif isinstance(value, (str, bool, int, float)):
            found[name] = value
    return found


def write_run(directory: Path, job_id: str, spec: Mapping[str, Any], series: Mapping[str, Points],
              state: str | None = None, started_at: float | None = None, finished_at: float | None = None) -> Run:
    """Write `directory/job_id/` as one TensorBoard run, replacing the event files an earlier export left
    there (each point once, however often it is exported); series without points are left out. The
    events carry `started_at` as their wall time: a series keeps no time per point."""
    run = directory / job_id
    older = set(_event_files(run))
    kept = {name: points for name, points in series.items() if len(points[0])}
    wall_time = started_at if started_at is not None else time.time()
    writer = EventFileWriter(str(run), max_queue_size=QUEUE_EVENTS)
    try:
        for summary in _hparams_summaries(hparams(spec), state, started_at, finished_at):
            writer.add_event(event_pb2.Event(wall_time=wall_time, summary=summary))
        for n, event in enumerate(_scalar_events(kept, wall_time), 1):
            writer.add_event(event)
            if n % QUEUE_EVENTS == 0:
                writer.flush()
        writer.close()
    except BaseException:
        writer.close()
        for path in set(_event_files(run)) - older:  # the run stays as it was, not half replaced
            path.unlink()
        raise
    for path in older:
        path.unlink()
    return Run(run, {name: len(points[0]) for name, points in kept.items()})


def _event_files(run: Path) -> Iterator[Path]:
    if run.is_dir():
        yield from (p for p in run.iterdir() if EVENT_FILE_MARK in p.name and p.is_file())


def _scalar_events(series: Mapping[str, Points], wall_time: float) -> Iterator[event_pb2.Event]:
    """Every point as an event, in step order across the series (as a live run writes them). As float32
    (`simple_value`): TensorBoard's default loader drops float64 scalars, so a float64 job's values are
    rounded here; a float32 job's (the default) are stored float32 and go exactly."""
    if not series:
        return
    names = list(series)
    steps = np.concatenate([np.asarray(its, dtype=np.int64) for its, _ in series.values()])
    values = np.concatenate([np.asarray(vals, dtype=np.float64) for _, vals in series.values()])
    which = np.concatenate([np.full(len(its), i, dtype=np.int64) for i, (its, _) in enumerate(series.values())])
    order = np.argsort(steps, kind="stable")
    for step, value, i in zip(steps[order].tolist(), values[order].tolist(), which[order].tolist(), strict=True):
        point = summary_pb2.Summary.Value(tag=names[i], simple_value=value)
        yield event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=[point]))


def _hparams_summaries(params: Mapping[str, HParam], state: str | None, started_at: float | None,
                       finished_at: float | None) -> list[summary_pb2.Summary]:
    """The session's start (its hparams' values) and end (its status), as torch's `hparams()` makes them,
    without its third, the experiment: TensorBoard uses one run's experiment for the whole logdir, so a
    sweep's would show the hparams of one job as not differing, and the metrics of one job only. Without
    one it builds it from every run: each hparam's values, and every scalar tag of a run as a metric."""
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=started_at or 0.0)
    for name, value in params.items():
        # bool before int: a bool is an int to isinstance (torch's order makes flags numbers)
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, str):
            start.hparams[name].string_value = value
        else:
            start.hparams[name].number_value = value
    status = api_pb2.Status.Value(STATUS.get(state or "", "STATUS_UNKNOWN"))
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=finished_at or 0.0)
    return [_plugin_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start),
            _plugin_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end)]


def _plugin_summary(tag: str, **data: Any) -> summary_pb2.Summary:
    """A summary holding no value, only the HParams plugin's data (its content) for `tag`."""
    content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data).SerializeToString()
    plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content)
    value = summary_pb2.Summary.Value(tag=tag, metadata=summary_pb2.SummaryMetadata(plugin_data=plugin))
    return summary_pb2.Summary(value=[value])
