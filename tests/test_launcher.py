"""worker/launcher.py's plan, without starting anything: which worker processes `tensorq worker --gpus ...` would
start (node names, queues, the GPU each is pinned to), how each is started, and when a crashing one is given up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared import functions
from shared.errors import BadInput
from shared.settings import Settings
from worker import devices, launcher
from worker.devices import Gpu
from worker.launcher import Child, plan

TWO_GPUS = [Gpu(0, "NVIDIA H200"), Gpu(1, "NVIDIA H200")]
SETTINGS = Settings("redis://:pw@127.0.0.1:6390/0", "env", Path("/nonexistent"), "tq-test:", 3600)


@pytest.fixture(autouse=True)
def offered(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The job functions this environment offers: none, unless a test adds some (the venv's examples/jobs
    would otherwise add theirs to every plan)."""
    found: dict[str, Any] = {}
    monkeypatch.setattr(functions, "offered", lambda: found)
    return found


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> list[Gpu]:
    """The GPUs this node would report: two, unless a test changes the list."""
    found = list(TWO_GPUS)
    monkeypatch.setattr(devices, "visible_gpus", lambda: found)
    return found


def test_none_is_one_cpu_worker_on_the_cpu_queues_and_asks_for_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_asking() -> list[Gpu]:
        raise AssertionError("--gpus none looked for GPUs")

    monkeypatch.setattr(devices, "visible_gpus", no_asking)
    assert plan("none", None, [], host="h") == [Child("cpu@h", ["cpu.high", "cpu", "cpu.low"], None)]


def test_all_is_one_worker_per_gpu_each_pinned_to_it(gpus: list[Gpu]) -> None:
    children = plan("all", None, [], host="h")
    assert [(c.name, c.gpu) for c in children] == [("gpu0@h", 0), ("gpu1@h", 1)]
    assert all(c.queues == ["gpu.high", "gpu", "gpu.low"] for c in children)


def test_all_on_a_node_without_gpus_is_one_cpu_worker(gpus: list[Gpu]) -> None:
    gpus.clear()
    assert [(c.name, c.gpu, c.queues[1]) for c in plan("all", None, [], host="h")] == [("cpu@h", None, "cpu")]


def test_a_name_and_extra_queues_every_level_high_first(gpus: list[Gpu]) -> None:
    [cpu] = plan("none", "drain", ["handback"], host="h")
    assert cpu.name == "drain@h"
    assert cpu.queues == ["cpu.high", "handback.high", "cpu", "handback", "cpu.low", "handback.low"]
    [gpu] = plan("1", "big", ["x"], host="h")
    assert (gpu.name, gpu.gpu, gpu.queues) == ("biggpu1@h", 1, ["gpu.high", "x.high", "gpu", "x", "gpu.low", "x.low"])


def test_each_function_offered_adds_its_queues_at_every_level(gpus: list[Gpu], offered: dict[str, Any]) -> None:
    """Given an environment offering `fit` and `eval`, a worker also consumes <base>.fn.<name> for each of its
    base queues, each priority level before the next, and only those."""
    offered.update({"fit": object(), "eval": object()})
    [cpu] = plan("none", None, ["group"], host="h")
    assert cpu.queues[:6] == ["cpu.high", "group.high", "cpu.fn.eval.high", "cpu.fn.fit.high", "group.fn.eval.high",
                              "group.fn.fit.high"]
    assert [q for q in cpu.queues if functions.named_in(q)] == [
        f"{b}.fn.{f}{level}" for level in (".high", "", ".low") for b in ("cpu", "group") for f in ("eval", "fit")]


def test_the_host_defaults_to_this_one(gpus: list[Gpu]) -> None:
    import socket

    assert plan("none", None, [])[0].name == f"cpu@{socket.gethostname()}"


def test_a_gpu_that_is_not_there_is_refused(gpus: list[Gpu]) -> None:
    with pytest.raises(BadInput, match=r"^--gpus: no GPU 7 on this node \(found: 0, 1\)$"):
        plan("7", None, [], host="h")


class Registry:
    """A node registry where some names are held already."""

    def __init__(self, held: set[str]) -> None:
        self.held = held

    def claim(self, name: str, owner: str) -> bool:
        if name in self.held:
            return False
        self.held.add(name)
        return True


def test_claimed_names_are_unique_on_the_host(gpus: list[Gpu]) -> None:
    children = plan("all", None, [], host="h")
    launcher.claim_names(children, Registry({"gpu0@h", "gpu0-2@h", "gpu1@h"}), owner="me")  # type: ignore[arg-type]
    assert [c.name for c in children] == ["gpu0-3@h", "gpu1-2@h"]


class Started:
    """What subprocess.Popen was asked to start."""

    pid = 4242

    def __init__(self, cmd: list[str], env: dict[str, str], **kwargs: Any) -> None:
        self.cmd, self.env, self.kwargs = cmd, env, kwargs


@pytest.mark.parametrize(("child", "visible"), [
    (Child("cpu@h", ["cpu.high", "cpu", "cpu.low"], None), ""),
    (Child("gpu1@h", ["gpu.high", "gpu", "gpu.low"], 1), "1"),
])
def test_each_child_is_a_solo_celery_worker_pinned_by_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                                       child: Child, visible: str) -> None:
    monkeypatch.setattr(launcher.subprocess, "Popen", Started)
    launcher.start(child, SETTINGS, "INFO")
    started: Any = child.proc
    args = started.cmd[started.cmd.index("worker.app"):]
    assert args[:2] == ["worker.app", "worker"]
    assert args[args.index("--hostname") + 1] == child.name
    assert args[args.index("--queues") + 1] == ",".join(child.queues)
    assert args[args.index("--pool") + 1] == "solo" and args[args.index("--concurrency") + 1] == "1"
    assert started.env["CUDA_VISIBLE_DEVICES"] == visible
    assert started.env["TENSORQ_BROKER_URL"] == SETTINGS.broker_url  # the broker through the environment...
    assert not any("pw@" in a for a in started.cmd)  # ...never on the command line, where `ps` shows it
    assert started.env["TENSORQ_KEY_PREFIX"] == "tq-test:" and started.env["TENSORQ_VISIBILITY_TIMEOUT_S"] == "3600"
    assert started.kwargs["start_new_session"] is True  # Ctrl-C reaches the launcher alone


def test_a_child_crashing_on_its_own_is_given_up_after_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    starts: list[str] = []
    monkeypatch.setattr(launcher, "start", lambda child, settings, loglevel: starts.append(child.name))
    child = Child("crashy@h", ["cpu"], None)
    for _ in range(launcher.RESTART_LIMIT):
        launcher.restart(child, SETTINGS, "INFO")
    assert not child.given_up and len(starts) == launcher.RESTART_LIMIT
    launcher.restart(child, SETTINGS, "INFO")
    assert child.given_up and len(starts) == launcher.RESTART_LIMIT
