"""shared/protocol.py: the queue a job goes to for its priority, the order a worker consumes its queues in, and
which names may be queues."""

from __future__ import annotations

import pytest

from shared.errors import BadInput
from shared.protocol import TaskName, check_queue_name, queue_for, queues_in_priority_order


@pytest.mark.parametrize(("base", "priority", "queue"), [
    ("cpu", "normal", "cpu"), ("cpu", "high", "cpu.high"), ("gpu", "low", "gpu.low"), ("big.v2", "high", "big.v2.high"),
])
def test_each_priority_is_a_queue_of_its_own(base: str, priority: str, queue: str) -> None:
    assert queue_for(base, priority) == queue


def test_normal_is_the_default_priority() -> None:
    assert queue_for("gpu") == "gpu"


def test_a_worker_takes_every_high_queue_first_then_normal_then_low() -> None:
    assert queues_in_priority_order(["gpu", "big"]) == ["gpu.high", "big.high", "gpu", "big", "gpu.low", "big.low"]
    assert queues_in_priority_order([]) == []


@pytest.mark.parametrize("name", ["cpu", "gpu-a100", "team_7", "v1.2", "A" * 64])
def test_queue_names_a_node_group_may_take(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a b", "a/b", "a,b", "é", "A" * 65])
def test_queue_names_that_are_refused_in_one_line(name: str) -> None:
    with pytest.raises(BadInput) as info:
        check_queue_name(name)
    assert str(info.value) == f"--queue: {name!r} is not a queue name (letters, digits, '.', '_', '-')"


def test_task_names_are_the_ones_workers_register() -> None:
    assert {t.value for t in TaskName} == {"tensorq.tensor_op", "tensorq.tensor_ops", "tensorq.train", "tensorq.run"}
