"""The Python client, the layer the CLI is built on: submit jobs, look them up, wait, read what they made.

    from producer import Client
    client = Client()
    job = client.submit_train(hidden_size=100, iterations=500, seed=0)
    job.wait()
    print(job.losses()[-1])
"""

from __future__ import annotations

import functools
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.job import Job, as_tensor
from shared import broker_errors, defaults, kinds
from shared import settings as settings_mod
from shared.errors import BadInput, BrokerUnreachable, JobNotFound
from shared.protocol import Queue, check_queue_name, queue_for
from shared.redis_conn import connect, failure_message
from shared.registry import NodeRegistry, served_queues
from shared.settings import Settings
from shared.store import JobRecord, JobStore
from shared.vocab import Device, JobState, Kind, Priority

if TYPE_CHECKING:
    from shared.groups import GroupRecord
    from shared.specs import RunSpec
    from shared.streamed import Streamed
    from shared.sweeps import Planned

class UnservedQueueWarning(UserWarning):
    """Warned when a job is sent to a queue no live worker consumes: it waits there until one does."""


OPS = kinds.KINDS[Kind.OP]
# A submit writes again what a failover lost this many times at most (each failover takes seconds).
FAILOVER_REWRITES = 3
# A job record as the store's create_many takes it: (id, kind, spec, queue, links).
NewRecord = tuple[str, str, dict[str, Any], str, dict[str, str | None]]
# The queue a device names outright; `auto` is routed by the fleet (Client.route).
FIXED_QUEUES = {Device.CUDA: Queue.GPU, Device.CPU: Queue.CPU}


def checked_queue(queue: str | None) -> str | None:
    return None if queue is None else check_queue_name(queue)


def checked_priority(priority: str) -> str:
    """Every submit path checks it: a priority no worker reads would leave its jobs waiting forever."""
    if priority not in Priority.values():
        raise BadInput(f"--priority: must be {', '.join(Priority.values())} (got {priority!r})")
    return priority


def checked_function(spec: Any) -> Any:
    """A run job's params, checked by its function's own model where the function is installed here too."""
    from shared import functions
    from shared.specs import RunSpec

    if not isinstance(spec, RunSpec):
        return spec
    return spec.model_copy(update={"params": functions.check_before_enqueue(spec.function, spec.params)})


def new_job_id() -> str:
    return secrets.token_hex(8)


def new_group_id() -> str:
    return "g" + secrets.token_hex(8)[1:]  # a `g` in front: a group id is never mistaken for a job id


class Client:
    def __init__(self, broker: str | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or settings_mod.resolve(broker)
        self._store: JobStore | None = None
        self._celery: Any = None
        self._served: tuple[float, set[str]] | None = None  # (when read, queues live workers consume)
        self._datasets: dict[str, Streamed] = {}  # sha256 -> blob: datasets read, sent with the first job using them

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = JobStore.of(connect(self.settings), self.settings)
        return self._store

    @property
    def registry(self) -> NodeRegistry:
        return NodeRegistry(self.store.redis, self.store.keys)

    # --- submitting ----------------------------------------------------------------------------------

    def submit_op(self, op: str, a: Any, b: Any, device: str = Device.AUTO.value, seed: int | None = None,
                  dtype: str | None = None, queue: str | None = None, priority: str = Priority.NORMAL.value) -> Job:
        """`op(a, b)`; a and b: nested lists, numpy arrays, torch tensors, or the CLI's operand strings."""
        from producer.inputs import operand
        from shared.specs import seed_randn

        spec = {"kind": Kind.OP.value, "op": op, "a": operand(a, "A", dtype), "b": operand(b, "B", dtype),
                "device": device, "dtype": dtype, "seed": seed}
        return self.submit(seed_randn(spec), queue, priority)

    def map_op(self, op: str, pairs: Any, device: str = Device.AUTO.value, dtype: str | None = None,
               seed: int | None = None, queue: str | None = None, priority: str = Priority.NORMAL.value) -> list[Job]:
        """`op(a, b)` for every (a, b) in `pairs`: each its own job (state, result), but sent many to a message,
        so tiny ops cost a fraction of a message each."""
        specs = [{"op": op, "a": a, "b": b, "device": device, "dtype": dtype, "seed": seed} for a, b in pairs]
        return self.submit_ops(specs, queue, priority)[1]

    def submit_ops(self, ops: list[dict[str, Any]], queue: str | None = None, priority: str = Priority.NORMAL.value,
                   base_dir: Path | None = None) -> tuple[str, list[Job]]:
        """Op jobs given as dicts (op, a, b, and optionally seed, dtype, device), batched into few messages
        under one group; all are validated before any is sent."""
        from producer.inputs import file_operand
        from shared.dispatch import send_batch
        from shared.groups import GroupStore
        from shared.specs import TensorOpSpec, parse_spec, seed_randn

        if not ops:
            raise BadInput("no ops to submit")
        specs = []
        for k, item in enumerate(ops, start=1):
            if not isinstance(item, dict):
                raise BadInput(f"op {k}: expected an object with op, a and b")
            spec = {"kind": Kind.OP.value, **item}
            for name in OPS.operands:
                if name in spec:
                    spec[name] = file_operand(spec[name], f"op {k}: {name.upper()}", base_dir or Path.cwd(),
                                              spec.get("dtype"))
            try:
                parsed = parse_spec(seed_randn(spec))
            except BadInput as e:
                raise BadInput(f"op {k}: {e}") from None
            if not isinstance(parsed, TensorOpSpec):  # a batch message carries op jobs only
                raise BadInput(f"op {k}: kind: must be {Kind.OP.value!r} here (got {parsed.kind.value!r})")
            specs.append(parsed)
        devices = {s.device for s in specs}
        if len(devices) > 1:
            raise BadInput(f"one batch runs on one device; these ops ask for {', '.join(sorted(devices))}")
        target = queue_for(checked_queue(queue) or self.route(devices.pop()), checked_priority(priority))
        group_id = new_group_id()
        jobs = [(new_job_id(), spec) for spec in specs]
        ids = [job_id for job_id, _ in jobs]
        records: list[NewRecord] = [(job_id, Kind.OP.value, spec.model_dump(mode="json"), target,
                                     {"priority": priority, "group": group_id}) for job_id, spec in jobs]
        groups = GroupStore(self.store.redis, self.store.keys)
        step = defaults.BATCH_MAX_OPS
        messages = [(ids[k:k + step], functools.partial(send_batch, self.celery, f"{group_id}-{k // step}",
                                                        jobs[k:k + step], target)) for k in range(0, len(jobs), step)]
        self._durably(records, messages, group_id, on_sent=lambda sent: groups.create(group_id, sent, [], "batch"))
        self._warn_unserved({target})
        return group_id, [Job(self, job_id) for job_id in ids]

    def cancel(self, jobs: list[Job], wait_s: float = 10.0) -> list[JobRecord]:
        """Cancel many jobs: every request first, then one wait (up to `wait_s`) for the running ones."""
        for job in jobs:
            self.store.request_cancel(job.id)
        try:
            return self.wait_all(jobs, timeout=wait_s)
        except TimeoutError:
            return [r for r in self.store.get_many([j.id for j in jobs]) if r is not None]

    def wait_all(self, jobs: list[Job], timeout: float | None = None) -> list[JobRecord]:
        """Wait for many jobs; their final records, in order. A few round trips per wake-up for the lot."""
        store, ids, ride = self.store, [j.id for j in jobs], broker_errors.RideOut()  # through a failover, too
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = store.finished_cursor()
        while True:
            records = ride(store.get_many, ids)
            found = [r for r in records if r is not None]
            if len(found) < len(ids):
                missing = next(job_id for job_id, r in zip(ids, records, strict=True) if r is None)
                raise JobNotFound(f"no job {missing!r}")
            waiting = sum(not r.finished for r in found)
            if not waiting:
                return found
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{waiting} of {len(ids)} jobs still unfinished after {timeout:g} s")
            _, ended = ride(store.wait_events, {}, cursor, defaults.WAIT_BLOCK_MS)
            cursor = ended[-1][0] if ended else cursor

    def gather(self, jobs: list[Job], timeout: float | None = None) -> list[Any]:
        """Wait for many op jobs and return their results (as `Job.result()`: torch tensors where torch is
        installed, else numpy arrays), in order, fetched together. A job that did not succeed raises JobFailed."""
        from shared.errors import JobFailed
        from shared.tensors import load_safetensors

        for r in self.wait_all(jobs, timeout):
            if r.state != JobState.SUCCEEDED.value:
                raise JobFailed(f"job {r.id} {r.state}: {r.error or 'no reason recorded'}")
        blobs = self.store.blobs.get_artifacts([j.id for j in jobs], OPS.result)
        # a result gone since (expired, deleted): the job's own reader says why, in one line
        return [as_tensor(load_safetensors(blob)[OPS.result]) if blob is not None else job.result()
                for job, blob in zip(jobs, blobs, strict=True)]

    def submit_run(self, name: str, params: dict[str, Any] | None = None, seed: int | None = None,
                   device: str = Device.AUTO.value, timeout: float | None = None, queue: str | None = None,
                   priority: str = Priority.NORMAL.value) -> Job:
        """Run the job function `name` (an entry point in the group tensorq.jobs where the workers run) with
        `params`; without a seed, one is chosen and recorded. Params are checked before anything is enqueued
        where the function is installed here too (its pydantic `params` model), and again on the worker."""
        spec = {"kind": Kind.RUN.value, "function": name, "params": params or {}, "seed": seed, "device": device,
                "timeout": timeout}
        return self.submit({k: v for k, v in spec.items() if v is not None}, queue, priority)

    def submit_train(self, queue: str | None = None, priority: str = Priority.NORMAL.value, **options: Any) -> Job:
        """A training job; options are the CLI flags as keyword arguments (hidden_size=100, lr=1e-6, ...; a
        flag's own spelling, `**{"hidden-size": 100}`, works too)."""
        from shared.sweeps import field_name

        return self.submit({"kind": Kind.TRAIN.value, **{field_name(k): v for k, v in options.items()}}, queue,
                           priority)

    def submit(self, spec: dict[str, Any], queue: str | None = None, priority: str = Priority.NORMAL.value) -> Job:
        """Validate `spec` whole, record the job `queued`, and send its task by name to a queue: `queue` when
        given (a node group started with `tensorq worker --queue NAME`), else the one for the job's device;
        at `priority` high, normal or low."""
        from shared.specs import parse_spec, seed_randn
        from shared.sweeps import Planned

        return self._enqueue([Planned(parse_spec(seed_randn(self._with_data(spec))), priority, queue)])[0]

    def sweep(self, spec: dict[str, Any], sweep: dict[str, list[Any]], seeds: int | None = None,
              queue: str | None = None, priority: str = Priority.NORMAL.value) -> tuple[str, list[Job]]:
        """The grid of `spec` over `sweep` (field -> values), times `seeds` seeds: one group of jobs.
        `spec` is a training job's unless it says `"kind": "op"`. Returns (group id, the jobs)."""
        from shared.sweeps import expand

        entry = {"kind": Kind.TRAIN.value, **self._with_data(spec), "sweep": sweep, "seeds": seeds,
                 "priority": priority, "queue": queue}
        planned = expand({k: v for k, v in entry.items() if v is not None}, "sweep")
        return self.submit_group(planned, "sweep")

    def submit_file(self, path: str | Path) -> tuple[str, list[Job]]:
        """Every job of a YAML or JSON job file (sweeps expanded), validated whole first: one group."""
        from producer.inputs import file_operand
        from shared.sweeps import load_job_file

        path = Path(path)
        return self.submit_group(load_job_file(path, file_operand, self._with_data), path.name)

    def submit_group(self, planned: list[Planned], source: str) -> tuple[str, list[Job]]:
        from shared.groups import GroupStore

        group_id = new_group_id()
        swept = sorted({k for p in planned for k in p.swept})
        groups = GroupStore(self.store.redis, self.store.keys)
        jobs = self._enqueue(planned, group_id, on_sent=lambda ids: groups.create(group_id, ids, swept, source))
        return group_id, jobs

    def rerun(self, job_id: str, changes: dict[str, Any] | None = None) -> Job:
        """The same spec again (with `changes`), on the same queue and priority; the new record links back."""
        from shared.functions import FUNCTION_QUEUE
        from shared.specs import parse_spec
        from shared.sweeps import Planned, field_name, with_values

        original = self.store.require(job_id)
        spec = with_values(original.spec, {field_name(k): v for k, v in (changes or {}).items()})
        if "dataset" in spec:  # a new dataset by name replaces the job's own
            spec.pop("data", None)
        try:
            parsed = parse_spec(self._with_data(spec))
        except BadInput as e:
            raise BadInput(f"--set: {e}") from None
        base = original.queue.rsplit(".", 1)[0] if original.priority != Priority.NORMAL else original.queue
        base = base.split(FUNCTION_QUEUE, 1)[0]  # a job function's queue is made again from its base
        return self._enqueue([Planned(parsed, original.priority, base)], rerun_of=original.id)[0]

    def _enqueue(self, planned: list[Planned], group: str | None = None, rerun_of: str | None = None,
                 on_sent: Callable[[list[str]], None] | None = None) -> list[Job]:
        """Record every job `queued`, then send each task, then call `on_sent(ids)`. If the broker fails
        midway, the records of the jobs not sent are deleted, `on_sent` still gets the ids that were sent
        (they run), and the error says how many went."""
        from shared.dispatch import send_job
        from shared.specs import RunSpec

        for p in planned:
            checked_queue(p.queue)
            checked_priority(p.priority)
            p.spec = checked_function(p.spec)
        gpu_alive = None
        routed = []
        for p in planned:
            if isinstance(p.spec, RunSpec):  # only workers offering the function consume its queues
                routed.append((new_job_id(), p, queue_for(self.route_function(p.spec, p.queue), p.priority)))
                continue
            if p.queue is None and p.spec.device == Device.AUTO and gpu_alive is None:
                gpu_alive = self.registry.serves(Queue.GPU.value)  # asked once per submit, not per job
            base = p.queue or self.route(p.spec.device, gpu_alive)
            if getattr(p.spec, "cuda_graph", False) and base == Queue.CPU.value:
                raise BadInput("--cuda-graph needs a GPU worker, and none is alive: the job would fail on a CPU "
                               "worker (use --device cuda to queue it until a GPU worker starts)")
            routed.append((new_job_id(), p, queue_for(base, p.priority)))
        self._durably([(job_id, p.spec.kind.value, p.spec.model_dump(mode="json"), queue,
                        {"priority": p.priority, "group": group, "rerun_of": rerun_of}) for job_id, p, queue in routed],
                      [([job_id], functools.partial(send_job, self.celery, job_id, p.spec, queue))
                       for job_id, p, queue in routed], group, on_sent, lambda: self._send_datasets(planned))
        self._warn_unserved({queue for _, _, queue in routed})
        return [Job(self, job_id) for job_id, _, _ in routed]

    def _with_data(self, spec: dict[str, Any], base_dir: Path | None = None, where: str = "data") -> dict[str, Any]:
        """A training spec's `data` (a file, an (x, y) pair) or `dataset` (a name) read and checked now, before
        anything is enqueued; the spec then holds the dataset's reference, and its blob waits to be sent."""
        if not isinstance(spec, dict) or spec.get("kind", Kind.TRAIN.value) != Kind.TRAIN.value:
            return spec
        if "data" not in spec and "dataset" not in spec:
            return spec
        from shared import datasets

        resolved, dataset = datasets.resolve({k.replace("-", "_"): v for k, v in spec.items()}, base_dir, where)
        if dataset is not None:
            self._datasets[dataset.sha256] = dataset.streamed
        return resolved

    def _send_datasets(self, planned: list[Planned]) -> None:
        """Each dataset the jobs train on reaches the broker once, under its hash, before any job names it (one
        already there is not sent again); one a rerun names that is gone is an error before anything is sent."""
        from shared.specs import TrainSpec

        refs = [p.spec.data for p in planned if isinstance(p.spec, TrainSpec) and p.spec.data is not None]
        for sha in dict.fromkeys(ref.sha256 for ref in refs):
            blob = self._datasets.get(sha)
            if blob is not None:
                self.store.blobs.put_dataset(sha, blob)
            elif not self.store.blobs.has_dataset(sha):
                raise BadInput(f"dataset {sha[:12]} is no longer in the broker: submit the job again with its data")

    def _durably(self, records: list[NewRecord],
                 messages: Sequence[tuple[list[str], Callable[[], object]]], group: str | None,
                 on_sent: Callable[[list[str]], None] | None = None, datasets: Callable[[], None] | None = None
                 ) -> None:
        """Write the jobs' datasets and records, send their messages (`_send`), and, where the primary has
        replicas, wait until one holds all of it (shared/replication.py), so a failover right after loses no job
        that was said to be queued. If the primary changed meanwhile, what the new one lacks is written again:
        the datasets and records it misses, and every message (a job's second message is dropped by the worker
        that gets it once the first has run it, or while it runs)."""
        store, again = self.store, False
        for _ in range(FAILOVER_REWRITES):
            before = store.replication.primary()
            if datasets is not None:
                datasets()  # a dataset the broker holds is not sent again
            if again:
                states = store.states([r[0] for r in records])
                records = [r for r, state in zip(records, states, strict=True) if state is None]
                if group is not None and store.redis.exists(store.keys.group(group)):
                    on_sent = None  # the group is there: its list would get the ids twice
            if records:
                store.create_many(records)
            self._send(messages, group, on_sent)
            if store.replication.settle(before):
                return
            again = True
        raise BrokerUnreachable(f"broker at {self.settings.masked_broker_url}: its primary changed "
                                f"{FAILOVER_REWRITES} times while these jobs were sent; see `tensorq list` for them")

    def _send(self, messages: Sequence[tuple[list[str], Callable[[], object]]], group: str | None,
              on_sent: Callable[[list[str]], None] | None = None) -> None:
        """Send each message (the ids of the jobs it carries, a call that publishes it), then `on_sent(ids)`.
        The one way every job leaves: if the broker fails midway, the records of the jobs not sent are
        deleted, `on_sent` still gets the ids that were sent (they run), and the error says how many went."""
        total = sum(len(ids) for ids, _ in messages)
        sent: list[str] = []
        for k, (ids, publish) in enumerate(messages):
            try:
                publish()
            except Exception as e:  # any failure to publish: forget what was not sent
                self.store.delete(*(job_id for unsent, _ in messages[k:] for job_id in unsent))
                if on_sent is not None and sent:
                    on_sent(sent)
                gone = f" after sending {len(sent)} of {total} jobs" + (f" (group {group})" if group else "") \
                    if sent else ""
                raise BrokerUnreachable(f"{failure_message(self.settings, e, self.store.redis)}{gone}") from e
            sent.extend(ids)
        if on_sent is not None:
            on_sent(sent)

    def _warn_unserved(self, queues: set[str]) -> None:
        """An UnservedQueueWarning for each queue no live worker consumes (the jobs wait there). The fleet is
        read at most once per heartbeat interval, so a loop of tiny submits does not pay for it each time."""
        now = time.monotonic()
        if self._served is None or now - self._served[0] > defaults.HEARTBEAT_INTERVAL_S:
            self._served = (now, served_queues(self.registry.live()))
        for queue in sorted(queues - self._served[1]):
            warnings.warn(f"no live worker consumes queue {queue!r}; jobs wait there until one does",
                          UnservedQueueWarning, stacklevel=3)

    def route_function(self, spec: RunSpec, queue: str | None) -> str:
        """A job function's queue: `<base>.fn.<name>`, base as for any job (auto: gpu when a live GPU worker
        offers the function, else cpu), so a worker that lacks the function never receives it."""
        from shared import functions

        if queue is not None or spec.device != Device.AUTO:
            return functions.queue(queue or self.route(spec.device), spec.function)
        on_gpu = self.registry.serves(functions.queue(Queue.GPU.value, spec.function))
        return functions.queue(Queue.GPU.value if on_gpu else Queue.CPU.value, spec.function)

    def route(self, device: str, gpu_alive: bool | None = None) -> str:
        """The queue for a device: cuda -> gpu; cpu -> cpu; auto -> gpu when a GPU worker is alive, else cpu."""
        if device in FIXED_QUEUES:
            return FIXED_QUEUES[Device(device)].value
        if gpu_alive is None:
            gpu_alive = self.registry.serves(Queue.GPU.value)
        return Queue.GPU.value if gpu_alive else Queue.CPU.value

    @property
    def celery(self) -> Any:  # a Celery app (celery ships no types)
        if self._celery is None:
            from shared.celery_app import make_celery

            self._celery = make_celery(self.settings, main="tensorq-producer")
        return self._celery

    # --- looking up ----------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        """The job with this id, or with the one id that starts with it (at least 4 characters)."""
        return Job(self, self.store.require(job_id).id)

    def group(self, group_id: str) -> tuple[GroupRecord, list[JobRecord]]:
        """A group and its jobs' records, in submit order."""
        from shared.groups import GroupStore

        record = GroupStore(self.store.redis, self.store.keys).require(group_id)
        return record, [j for j in self.store.get_many(record.job_ids) if j is not None]

    def ranked(self, group_id: str, by: str = "loss") -> list[JobRecord]:
        """A group's jobs best first by their last value of the metric `by` (lowest first, highest for an
        accuracy), as `tensorq group G --rank-by METRIC` ranks them: succeeded jobs first, then the rest."""
        from producer.experiments import check_ranked_by, ranked
        from shared.series import check_name

        jobs = self.group(group_id)[1]
        return ranked(jobs, check_ranked_by(jobs, check_name(by), group_id))

    def jobs(self, state: str | None = None, limit: int = 50, kind: str | None = None,
             since: str | float | datetime | None = None, group: str | None = None) -> list[JobRecord]:
        """Job records, newest first; `since` as the CLI takes it (`30m`, `2h`, `1d`, an ISO date), a datetime,
        or epoch seconds; `group` a sweep's or job file's id. Filters combine, answered from indexes."""
        from producer import durations

        if state is not None and state not in {s.value for s in JobState}:
            raise BadInput(f"unknown state {state!r}")
        if kind is not None and kind not in {k.value for k in Kind}:
            raise BadInput(f"unknown kind {kind!r}")
        return self.store.list(state, limit, kind, None if since is None else durations.since(since), group)

