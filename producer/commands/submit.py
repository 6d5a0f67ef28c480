"""Submitting jobs: `submit op`, `submit train` (with sweeps), `submit -f jobs.yaml`, and `rerun`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from producer.commands.common import (
    broker_option,
    client,
    json_option,
    print_json,
    progress_printer,
    report_failures,
    say,
)
from shared import kinds
from shared.defaults import TRAIN
from shared.vocab import (
    Activation,
    Bundled,
    Device,
    Grad,
    JobState,
    Kind,
    Loss,
    Op,
    OpDtype,
    Priority,
    TrainDtype,
    Word,
)

if TYPE_CHECKING:
    from producer.client import Client
    from producer.job import Job


def choice(words: type[Word]) -> click.Choice[str]:
    """A flag's choices: a vocabulary's words (shared/vocab.py), never retyped."""
    return click.Choice(words.values())


class SpecDefault(click.Option):
    """A flag that defaults to "not given", so the spec's own default decides (a changed default in
    shared/defaults.py TRAIN reaches jobs from the CLI and from Python alike); --help shows that default."""

    def __init__(self, *args: Any, shown: object = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown = shown

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        shown = self.shown if self.shown is not None else getattr(TRAIN, self.name or "", None)
        if shown is not None:
            extra["default"] = str(shown)
        return extra


def submit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--device", type=choice(Device), cls=SpecDefault, shown=Device.AUTO,
                     help="auto: a GPU worker when one is alive, else the CPU."),
        click.option("--queue", metavar="NAME", help="Send to this queue (a node group started with "
                                                    "`tensorq worker --queue NAME`) instead of gpu/cpu."),
        click.option("--priority", type=choice(Priority), default=Priority.NORMAL.value, show_default=True,
                     help="Workers take high before normal before low."),
        click.option("--wait", is_flag=True, help="Wait for the job, printing progress; exit 1 if it fails."),
        click.option("--watch", is_flag=True, help="Wait with a live progress bar; exit 1 if the job fails."),
        json_option,
        broker_option,
    ]):
        f = option(f)
    return f


@click.group(invoke_without_command=True)
@click.option("-f", "--file", "job_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Submit every job of a YAML or JSON job file (see `tensorq schema`), as one group.")
@click.option("--wait", is_flag=True, help="With -f: wait for every job; exit 1 if one fails.")
@click.option("--watch", is_flag=True, help="With -f: live progress bars until every job ends.")
@json_option
@broker_option
@click.pass_context
def submit(ctx: click.Context, job_file: Path | None, wait: bool, watch: bool, as_json: bool,
           broker: str | None) -> None:
    """Submit a job (`submit op`, `submit train`) or a whole job file (`submit -f jobs.yaml`)."""
    if ctx.invoked_subcommand is not None:
        if job_file is not None:
            raise click.UsageError("give either -f FILE or a job kind (op, train), not both")
        return
    if job_file is None:
        raise click.UsageError("give a job kind (op, train) or -f FILE")
    c = client(broker)
    group_id, jobs = c.submit_file(job_file)  # validated whole: a bad job enqueues nothing
    _after_group(c, group_id, jobs, wait, watch, as_json)


class SignedOperands(click.Command):
    """`submit op add -1 2`: an operand that starts with a minus sign is a number, not an option (Click would
    say "No such option: -1"). Such words are handed to Click behind a space, which the operand reader strips."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:  # the user already said where the operands are
            return super().parse_args(ctx, args)
        return super().parse_args(ctx, [f" {a}" if SIGNED_NUMBER.match(a) else a for a in args])


SIGNED_NUMBER = re.compile(r"-(?:\d|\.\d|inf|nan)", re.IGNORECASE)


@submit.command("op", cls=SignedOperands)
@click.argument("op", type=choice(Op), required=False)
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option("--many", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.jsonl",
              help="Many ops, one JSON object per line ({\"op\", \"a\", \"b\"}), sent together in few messages.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), help="Seed for randn:SHAPE operands.")
@click.option("--dtype", type=choice(OpDtype),
              help="Cast both operands (default: as given; literals read like torch.tensor).")
@submit_options
def submit_op(op: str | None, a: str | None, b: str | None, many: Path | None, seed: int | None, dtype: str | None,
              device: str | None, queue: str | None, priority: str, wait: bool, watch: bool, as_json: bool,
              broker: str | None) -> None:
    """Run OP on A and B: each a literal ('[[1., 2.], [3., 4.]]', -1.5, nan), randn:2x2x2, or a
    .npy/.safetensors/.pt/.json file."""
    c = client(broker)  # operands and specs are checked before Redis is opened
    if many is not None:
        if op or a or b:
            raise click.UsageError("give either OP A B or --many FILE.jsonl, not both")
        given = {k: v for k, v in (("device", device), ("dtype", dtype), ("seed", seed)) if v is not None}
        items = [{**given, **item} for item in read_jsonl(many)]
        group_id, jobs = c.submit_ops(items, queue, priority, base_dir=many.parent)
        _after_group(c, group_id, jobs, wait, watch, as_json)
        return
    if not (op and a is not None and b is not None):
        raise click.UsageError("give OP A B (e.g. add '[1,2]' '[3,4]'), or --many FILE.jsonl")
    job = c.submit_op(op, a, b, device=device or Device.AUTO.value, seed=seed, dtype=dtype, queue=queue,
                      priority=priority)
    _after_submit(c, job, wait, watch, as_json)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    from shared.errors import BadInput

    if not path.is_file():
        raise BadInput(f"--many: no such file: {path}")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise BadInput(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(item, dict):
            raise BadInput(f"{path}:{n}: expected an object with op, a and b")
        items.append(item)
    return items


@submit.command("train")
@click.option("--data", "data", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Train on this dataset: .npz arrays x, y or .safetensors tensors x, y (x: rows x inputs; y: rows "
                   "x outputs float targets, or rows class ids for --loss ce). Sizes come from it.")
@click.option("--dataset", type=choice(Bundled),
              help="Train on a bundled dataset: digits (scikit-learn's 8x8 digits; needs tensorq[datasets]).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="F",
              help="Hold out this share of the rows (a seeded split, stratified for --loss ce).")
@click.option("--standardize", is_flag=True, default=None,
              help="Scale each input by the training split's mean and std.")
@click.option("--eval-every", type=click.IntRange(1), metavar="N",
              help="Measure val_loss (and accuracy, val_accuracy for ce) every N iterations and at the end "
                   "(default: 20 times a run).")
@click.option("--batch-size", type=click.IntRange(1), cls=SpecDefault,
              help="Rows per iteration: torch.randn rows; with a dataset, a seeded mini-batch order "
                   "(default there: every training row).")
@click.option("--input-size", type=click.IntRange(1), cls=SpecDefault, help="With a dataset: its inputs.")
@click.option("--hidden-size", type=click.IntRange(1), cls=SpecDefault)
@click.option("--output-size", type=click.IntRange(1), cls=SpecDefault, help="With a dataset: its outputs.")
@click.option("--lr", type=float, cls=SpecDefault)
@click.option("--iterations", type=click.IntRange(1), cls=SpecDefault)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), cls=SpecDefault)
@click.option("--activation", type=choice(Activation), cls=SpecDefault)
@click.option("--loss", type=choice(Loss), cls=SpecDefault)
@click.option("--grad", type=choice(Grad), cls=SpecDefault,
              help="autograd or manual (hand-derived, no graph); --fast implies manual.")
@click.option("--dtype", type=choice(TrainDtype), cls=SpecDefault)
@click.option("--fast", is_flag=True, default=None,
              help="The fast path: manual gradients in preallocated buffers, weights updated in place.")
@click.option("--cuda-graph", is_flag=True, default=None, help="The fast path, captured as a CUDA graph (GPU).")
@click.option("--tf32", is_flag=True, default=None, help="Let float32 matmuls use TF32 tensor cores (GPU).")
@click.option("--timeout", type=float, metavar="SECONDS",
              help="Fail the job after this much training time (its history is kept).")
@click.option("--checkpoint-every", type=click.IntRange(1), metavar="N",
              help="Checkpoint every N iterations (default: about every 30 s of work).")
@click.option("--allow-nonfinite", is_flag=True, default=None,
              help="Run on through inf/nan losses (the note's loop) instead of failing the job as diverged.")
@click.option("--sweep", "sweeps", multiple=True, metavar="FIELD=V1,V2,...",
              help="Run the grid over these values (repeatable; e.g. --sweep lr=1e-6,1e-5).")
@click.option("--seeds", type=click.IntRange(1), metavar="N", help="Repeat each job with seeds seed .. seed+N-1.")
@submit_options
def submit_train(queue: str | None, priority: str, wait: bool, watch: bool, as_json: bool,
                 broker: str | None, sweeps: tuple[str, ...], seeds: int | None, **options: Any) -> None:
    """Train the note's two-layer network; the loss of every iteration is kept. With --sweep/--seeds, a
    group of jobs: the grid of the swept values times the seeds."""
    from shared.sweeps import parse_sweep_option

    c = client(broker)  # specs are checked before Redis is opened
    options = {k: v for k, v in options.items() if v is not None}  # not given: the spec's defaults decide
    if sweeps or seeds:
        grid = dict(parse_sweep_option(text) for text in sweeps)
        group_id, jobs = c.sweep({"kind": Kind.TRAIN.value, **options}, grid, seeds, queue, priority)
        _after_group(c, group_id, jobs, wait, watch, as_json)
        return
    job = c.submit_train(queue=queue, priority=priority, **options)
    _after_submit(c, job, wait, watch, as_json)


@submit.command("run")
@click.argument("name", metavar="NAME")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of the function (repeatable); the value is read as JSON when it can be (1e-3, true, "
                   "[1, 2]), else as text.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1),
              help="Seeds torch's global RNG before the call, and is ctx.seed (default: one chosen and recorded).")
@click.option("--timeout", type=float, metavar="SECONDS",
              help="Fail the job after this much time, over all attempts (at its next report, or when it returns).")
@click.option("--sweep", "sweeps", multiple=True, metavar="KEY=V1,V2,...",
              help="Run the grid over these param values (repeatable; e.g. --sweep lr=1e-3,1e-2).")
@click.option("--seeds", type=click.IntRange(1), metavar="N", help="Repeat each job with seeds seed .. seed+N-1.")
@submit_options
def submit_run(name: str, params: tuple[str, ...], seed: int | None, timeout: float | None, sweeps: tuple[str, ...],
               seeds: int | None, device: str | None, queue: str | None, priority: str, wait: bool, watch: bool,
               as_json: bool, broker: str | None) -> None:
    """Run your own job function NAME (an entry point in the group tensorq.jobs, installed where the workers
    run) with the same leases, checkpoints, cancel and metric series as a training job."""
    from shared.functions import check_name
    from shared.sweeps import parse_param, parse_sweep_option

    check_name(name)
    given = dict(parse_param(text) for text in params)
    spec = {"kind": Kind.RUN.value, "function": name, "params": given, "seed": seed, "device": device,
            "timeout": timeout}
    spec = {k: v for k, v in spec.items() if v is not None}
    c = client(broker)
    if sweeps or seeds:
        grid = dict(parse_sweep_option(text) for text in sweeps)
        group_id, jobs = c.sweep(spec, grid, seeds, queue, priority)
        _after_group(c, group_id, jobs, wait, watch, as_json)
        return
    _after_submit(c, c.submit(spec, queue, priority), wait, watch, as_json)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--set", "changes", multiple=True, metavar="FIELD=VALUE", help="Change a spec field (repeatable).")
@click.option("--wait", is_flag=True, help="Wait for the new job; exit 1 if it fails.")
@click.option("--watch", is_flag=True, help="Wait with a live progress bar.")
@json_option
@broker_option
def rerun(job_id: str, changes: tuple[str, ...], wait: bool, watch: bool, as_json: bool, broker: str | None) -> None:
    """Submit a job's spec again (optionally changed); the new job records which one it reruns."""
    from shared.errors import BadInput
    from shared.sweeps import parse_sweep_option

    updates = {}
    for text in changes:
        name, values = parse_sweep_option(text, "--set", "FIELD=VALUE such as lr=2e-6")
        if len(values) != 1:
            raise BadInput(f"--set: one value per field (got {text!r})")
        updates[name] = values[0]
    c = client(broker)
    _after_submit(c, c.rerun(job_id, updates), wait, watch, as_json)


def _after_group(c: Client, group_id: str, jobs: list[Job], wait: bool, watch: bool, as_json: bool) -> None:
    """A group's contract: `--json` prints {"group", "ids"} (with --wait, after the jobs ended)."""
    records = [r for r in c.store.get_many([j.id for j in jobs]) if r is not None]  # all: just written
    if not as_json:
        queues = ", ".join(sorted({r.queue for r in records}))
        say(f"submitted {len(jobs)} jobs as group {group_id} (queue {queues}); `tensorq group {group_id}` ranks them")
    finals = records
    if watch and not as_json:
        from producer import render
        from producer.watch import watch as watch_jobs

        finals = watch_jobs(c.store, [j.id for j in jobs], render.console())
    elif wait or watch:
        finals = c.wait_all(jobs)
    if as_json:
        ended = {"jobs": [f.to_status() for f in finals]} if wait or watch else {}  # keys are only added
        # a group may hold thousands of jobs: its status objects one line each, not indented
        print_json({"group": group_id, "ids": [j.id for j in jobs], **ended}, indent=None if ended else 2)
    else:
        if wait and not watch:
            from producer import render

            for final in finals:  # those that did not succeed are told by report_failures, below
                if final.state == JobState.SUCCEEDED:
                    render.summary(final)
        click.echo(group_id)
    if wait or watch:
        report_failures(finals)


def _after_submit(c: Client, job: Job, wait: bool, watch: bool, as_json: bool) -> None:
    record = job.status()
    if not (wait or watch):
        if as_json:
            print_json({"id": job.id, "kind": record.kind, "state": record.state, "queue": record.queue})
        else:
            click.echo(f"submitted {record.kind} job {job.id} to queue {record.queue}")
        return
    if as_json:
        final = job.wait()
        print_json(final.to_status())
    elif watch:
        say(f"submitted {record.kind} job {job.id} to queue {record.queue}; watching (Ctrl-C stops watching)")
        final = job.watch()
    else:
        from producer.watch import queue_position

        queued = record.state == JobState.QUEUED
        place = queue_position(c.store, record.queue, job.id, record.priority) if queued else None
        where = f" (#{place} in queue {record.queue})" if place and place > 1 else ""
        say(f"submitted {record.kind} job {job.id} to queue {record.queue}; waiting{where}")
        final = job.wait(on_losses=progress_printer(job.id, record.spec))
    if not as_json and final.state == JobState.SUCCEEDED:
        from producer import render

        if kinds.of(final.kind).shown_after_wait:
            render.tensor(job.result_array())
        render.summary(final)
    report_failures([final])
