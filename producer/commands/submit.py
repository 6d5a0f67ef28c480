"""Submitting jobs: `submit op`, `submit train`."""

from __future__ import annotations

from typing import Any

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

OPS = ("add", "sub", "mul", "div", "matmul")


def submit_options(f):
    for option in reversed([
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="auto: a GPU worker when one is alive, else the CPU."),
        click.option("--queue", metavar="NAME", help="Send to this queue (a node group started with "
                                                    "`tensorq worker --queue NAME`) instead of gpu/cpu."),
        click.option("--wait", is_flag=True, help="Wait for the job, printing progress; exit 1 if it fails."),
        click.option("--watch", is_flag=True, help="Wait with a live progress bar; exit 1 if the job fails."),
        json_option,
        broker_option,
    ]):
        f = option(f)
    return f


@click.group()
def submit() -> None:
    """Submit a job."""


@submit.command("op")
@click.argument("op", type=click.Choice(OPS))
@click.argument("a")
@click.argument("b")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), help="Seed for randn:SHAPE operands.")
@click.option("--dtype", type=click.Choice(["float16", "float32", "float64", "int32", "int64"]),
              help="Cast both operands (default: as given; literals read like torch.tensor).")
@submit_options
def submit_op(op: str, a: str, b: str, seed: int | None, dtype: str | None, device: str, queue: str | None,
              wait: bool, watch: bool, as_json: bool, broker: str | None) -> None:
    """Run OP on A and B: each a JSON literal, randn:2x2x2, or a .npy/.safetensors/.pt/.json file."""
    c = client(broker)  # operands and spec are checked before Redis is opened
    job = c.submit_op(op, a, b, device=device, seed=seed, dtype=dtype, queue=queue)
    _after_submit(c, job, wait, watch, as_json)


@submit.command("train")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--input-size", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--hidden-size", type=click.IntRange(1), default=100, show_default=True)
@click.option("--output-size", type=click.IntRange(1), default=10, show_default=True)
@click.option("--lr", type=float, default=1e-6, show_default=True)
@click.option("--iterations", type=click.IntRange(1), default=500, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--activation", type=click.Choice(["relu", "sigmoid"]), default="relu", show_default=True)
@click.option("--loss", type=click.Choice(["sse", "ce"]), default="sse", show_default=True)
@click.option("--grad", type=click.Choice(["autograd", "manual"]), default="autograd", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64", "bfloat16"]), default="float32",
              show_default=True)
@click.option("--timeout", type=float, metavar="SECONDS",
              help="Fail the job after this much training time (its history is kept).")
@click.option("--checkpoint-every", type=click.IntRange(1), metavar="N",
              help="Checkpoint every N iterations (default: about every 30 s of work).")
@submit_options
def submit_train(device: str, queue: str | None, wait: bool, watch: bool, as_json: bool, broker: str | None,
                 **options: Any) -> None:
    """Train the note's two-layer network; the loss of every iteration is kept."""
    c = client(broker)  # the spec is checked before Redis is opened
    job = c.submit_train(queue=queue, **options, device=device)
    _after_submit(c, job, wait, watch, as_json)


def _after_submit(c, job, wait: bool, watch: bool, as_json: bool) -> None:
    record = job.status()
    if not c.registry.serves(record.queue):
        say(f"warning: no live worker consumes queue {record.queue!r}; the job waits there")
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
        say(f"submitted {record.kind} job {job.id} to queue {record.queue}; waiting")
        final = job.wait(on_losses=progress_printer(job.id, record.spec))
    if not as_json and final.state == "succeeded":
        from producer import render

        if final.kind == "op":
            render.tensor(job.result_array())
        render.summary(final)
    report_failures([final])
