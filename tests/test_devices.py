"""worker/devices.py without a GPU: what `--gpus all|none|0,1` picks from the GPUs found, and how GPUs are found
(nvidia-smi, else the driver's /proc entries; never CUDA)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shared.errors import BadInput
from worker import devices
from worker.devices import Gpu, select

FOUND = [Gpu(0, "NVIDIA H200"), Gpu(1, "NVIDIA H200"), Gpu(3, "NVIDIA A100")]


@pytest.mark.parametrize(("arg", "indices"), [
    ("none", []), ("NONE", []), (" none ", []),
    ("all", [0, 1, 3]), ("All", [0, 1, 3]),
    ("0", [0]), ("3,0", [3, 0]), ("1,1,0", [1, 0]), ("0,", [0]), (" 1 , 3 ", [1, 3]),
])
def test_select_picks_the_gpus_asked_for_in_the_order_asked(arg: str, indices: list[int]) -> None:
    assert [g.index for g in select(arg, FOUND)] == indices


def test_all_of_no_gpus_is_none_so_one_cpu_worker() -> None:
    assert select("all", []) == []


@pytest.mark.parametrize(("arg", "found", "message"), [
    ("banana", FOUND, "--gpus: expected all, none or indices like 0,1 (got 'banana')"),
    ("0;1", FOUND, "--gpus: expected all, none or indices like 0,1 (got '0;1')"),
    ("2", FOUND, "--gpus: no GPU 2 on this node (found: 0, 1, 3)"),
    ("0,2,5", FOUND, "--gpus: no GPU 2, 5 on this node (found: 0, 1, 3)"),
    ("0", [], "--gpus: no GPU 0 on this node (found: none)"),
])
def test_select_refuses_what_is_not_there_in_one_line(arg: str, found: list[Gpu], message: str) -> None:
    with pytest.raises(BadInput) as info:
        select(arg, found)
    assert str(info.value) == message


def fake_smi(tmp_path: Path, script: str) -> str:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n{script}\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    return str(smi)


def no_proc_entries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The driver's /proc folder, as a folder of our own (absent until made)."""
    gpus = tmp_path / "proc-gpus"
    monkeypatch.setattr(devices, "Path", lambda p: gpus if p == "/proc/driver/nvidia/gpus" else Path(p))
    return gpus


def test_visible_gpus_asks_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    smi = fake_smi(tmp_path, 'echo "0, NVIDIA H200"; echo "1, NVIDIA H200 NVL"')
    monkeypatch.setattr(devices.shutil, "which", lambda name: smi if name == "nvidia-smi" else None)
    no_proc_entries(monkeypatch, tmp_path)
    assert devices.visible_gpus() == [Gpu(0, "NVIDIA H200"), Gpu(1, "NVIDIA H200 NVL")]


def test_visible_gpus_falls_back_to_the_drivers_proc_entries(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """Given an nvidia-smi that fails, Then the /proc entries count the GPUs."""
    smi = fake_smi(tmp_path, "exit 9")
    monkeypatch.setattr(devices.shutil, "which", lambda name: smi if name == "nvidia-smi" else None)
    gpus = no_proc_entries(monkeypatch, tmp_path)
    assert devices.visible_gpus() == []
    for bus in ("0000:18:00.0", "0000:2a:00.0"):
        (gpus / bus).mkdir(parents=True)
    assert devices.visible_gpus() == [Gpu(0, "NVIDIA GPU"), Gpu(1, "NVIDIA GPU")]


def test_no_nvidia_smi_and_no_driver_is_no_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    no_proc_entries(monkeypatch, tmp_path)
    assert devices.visible_gpus() == []


def test_a_cpu_device_is_described_as_cpu() -> None:
    import torch

    assert devices.describe_torch_device(torch.device("cpu")) == "cpu"
