"""A handle on one job: its status, waiting and watching, its metric series, what it made. Data is kept apart
from the handle: every call reads the store afresh, and the record (shared/store.JobRecord) is the data."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Protocol

from shared import broker_errors, defaults, kinds, metric_names, series
from shared.errors import BadInput, JobNotFound, TensorqError
from shared.store import JobRecord, JobStore
from shared.vocab import JobState, Kind

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

# wait(on_losses=f) calls f(first_iteration, losses) for each batch as it arrives: `losses` is a numpy float64
# array holding the losses of iterations first_iteration, first_iteration + 1, ...
LossCallback = Callable[[int, "np.ndarray"], None]


class Metric(NamedTuple):
    """A metric series as the client hands it back: measured at `iterations`, worth `values` there."""

    iterations: list[int]
    values: list[float]


class Owner(Protocol):
    """What a handle needs of the client that made it (producer/client.Client)."""

    @property
    def store(self) -> JobStore: ...

    def cancel(self, jobs: list[Job], wait_s: float = 10.0) -> list[JobRecord]: ...


def as_tensor(array: np.ndarray) -> Any:
    """What the client hands back for a tensor: a torch tensor when torch is installed, else the numpy array."""
    try:
        import torch
    except ImportError:
        return array
    return torch.from_numpy(array)


class _HeaderRead(Exception):
    """Stops an artifact's read once its header is in (Job.artifact_shapes)."""


class Job:
    """A thin handle on one job; every call reads the store afresh."""

    def __init__(self, client: Owner, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobRecord:
        return self.client.store.require(self.id)

    def wait(self, timeout: float | None = None, on_losses: LossCallback | None = None) -> JobRecord:
        """Block until the job ends (TimeoutError after `timeout` s); `on_losses` sees each loss batch."""
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = self._follow(deadline, timeout, losses=on_losses is not None)
        while True:
            try:
                batch = next(follow)
            except StopIteration as end:
                final: JobRecord = end.value
                return final
            if on_losses is not None:
                on_losses(*batch)

    def _follow(self, deadline: float | None, timeout: float | None = None, losses: bool = True
                ) -> Generator[tuple[int, np.ndarray], None, JobRecord]:
        """Loss batches as they arrive, then the final record: blocking reads of the job's loss stream and of
        the stream of ended jobs, so a waiter wakes the moment its job ends (no polling)."""
        store, after, ride = self.client.store, "0-0", broker_errors.RideOut()  # through a failover, too
        record = self.status()
        if not record.finished:
            cursor = store.finished_cursor()
            record = self.status()  # again, now that no ending after the cursor can be missed
        while not record.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {record.state} after {timeout:g} s")
            follow = losses and kinds.has_curves(record.kind)  # nobody reads them: do not move them
            wanted = {(self.id, "loss"): after} if follow else {}
            batches, ended = ride(store.wait_events, wanted, cursor, defaults.WAIT_BLOCK_MS)
            for _, _, chunk in batches:
                after = chunk.entry_id
                yield chunk.first, chunk.values
            if ended:
                cursor = ended[-1][0]
            if not batches or any(job_id == self.id for _, job_id in ended):
                record = ride(self.status)
        if losses and kinds.has_curves(record.kind):  # whatever arrived since the last read
            yield from ((c.first, c.values) for c in ride(lambda: list(store.series.chunks(self.id, "loss", after))))
        return record

    def cancel(self, wait_s: float = 10.0) -> JobRecord:
        """Cancel: a queued job never starts; a running one stops at its next iteration, keeps its partial
        history and ends `cancelled` (waited for up to `wait_s`). A job that had ended stays as it was."""
        return self.client.cancel([self], wait_s)[0]

    def losses(self) -> list[float]:
        """Every iteration's loss, in order (an op job's: none). One read: no record lookup, no check."""
        return self.client.store.series.read(self.id, metric_names.LOSS)[1].tolist()  # type: ignore[no-any-return]

    def metric(self, name: str) -> Metric:
        """One named metric series: the iterations it was measured at and its values there. BadInput (naming
        the metrics the job has) for one it does not have."""
        series.require(self.status(), name)
        iterations, values = self.client.store.series.read(self.id, name)
        return Metric(iterations.tolist(), values.tolist())

    def metrics(self) -> dict[str, Metric]:
        """Every metric series the job has recorded so far, by name (`loss` first)."""
        names = series.names(self.status())
        return {name: Metric(*(a.tolist() for a in self.client.store.series.read(self.id, name))) for name in names}

    def result(self) -> Any:
        """An op job's result: a torch tensor when torch is installed, else a numpy array."""
        return as_tensor(self.result_array())

    def result_array(self) -> np.ndarray:
        """An op job's result as a numpy array (never imports torch)."""
        from shared.tensors import load_safetensors

        name = kinds.KINDS[Kind.OP].result
        return load_safetensors(self._artifact(name))[name]

    def watch(self, console: Any = None) -> JobRecord:
        """Draw a live progress bar until the job ends (Ctrl-C stops watching, not the job)."""
        from producer.watch import watch

        return watch(self.client.store, [self.id], console)[0]

    def weights(self) -> dict[str, Any]:
        """A training job's weights {"w1", "w2"} (a bfloat16 job's are widened, exactly, to float32), as
        `result()`: torch tensors when torch is installed, else numpy arrays. A cancelled, timed-out or
        diverged job keeps those of its last iteration: `status().summary["weights_at"]` says which."""
        from shared.tensors import load_safetensors

        return {name: as_tensor(w) for name, w in load_safetensors(self._artifact("weights")).items()}

    def artifact_shapes(self, name: str) -> dict[str, list[int]]:
        """The shapes of an artifact's tensors, read from its header alone (of a large one, its first chunk: what
        `tensorq result` prints for 1 GiB of weights without reading them)."""
        from shared import tensorfile

        head = bytearray()

        def take(data: bytes | bytearray) -> None:
            head.extend(data)
            if tensorfile.header_end(head) is not None:
                raise _HeaderRead

        try:
            found = self.client.store.blobs.copy_artifact(self.id, name, take)
        except _HeaderRead:
            found = True
        if not found:
            self._missing(name)
        return tensorfile.shapes(head)

    def artifact_bytes(self, name: str) -> bytes | bytearray:
        return self._artifact(name)

    def save_artifact(self, name: str, path: Path) -> None:
        """Write an artifact's safetensors bytes to `path` as they are read, a chunk at a time: a large one (1 GiB
        of weights) is never whole in memory. Written beside it first, so a read that fails leaves no half file."""
        part = path.with_name(path.name + ".part")
        try:
            with open(part, "wb") as f:
                found = self.client.store.blobs.copy_artifact(self.id, name, f.write)
            if found:
                part.replace(path)
        finally:
            part.unlink(missing_ok=True)
        if not found:
            self._missing(name)

    def _artifact(self, name: str) -> bytes | bytearray:
        blob = self.client.store.blobs.get_artifact(self.id, name)
        if blob is None:  # only now is the record worth reading, to say why
            self._missing(name)
        return blob

    def _missing(self, name: str) -> NoReturn:
        """Why the job has no such artifact, as the error to raise."""
        record = self.status()
        why = f" ({record.error})" if record.error else ""
        made_by = next((k.kind.value for k in kinds.KINDS.values() if k.result == name), None)
        if made_by is not None and record.kind != made_by:
            raise BadInput(f"job {self.id} has no {name}: it is of kind {record.kind}, and only {made_by} jobs "
                           f"make {name} (it has: {', '.join(record.artifacts) or 'nothing'})")
        if not record.finished:
            raise TensorqError(f"job {self.id} is {record.state}; it has no {name} yet{why}")
        if record.state != JobState.SUCCEEDED.value:  # it ended before it made any (or before it started)
            raise TensorqError(f"job {self.id} is {record.state}; it has no {name}{why}")
        raise JobNotFound(f"job {self.id} has no {name} artifact")
