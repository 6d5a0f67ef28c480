"""Finding GPUs without initialising CUDA, and describing the device a worker process runs on."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import BadInput

if TYPE_CHECKING:
    import torch  # the launcher imports this module, and never torch


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str


def visible_gpus() -> list[Gpu]:
    """The node's GPUs, asked of nvidia-smi (or the driver's /proc entries), never of CUDA.

    The launcher forks worker processes; initialising CUDA here would make those forks unsafe.
    """
    if smi := shutil.which("nvidia-smi"):
        try:
            out = subprocess.run([smi, "--query-gpu=index,name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout
            return [Gpu(int(i), n.strip()) for i, n in (line.split(",", 1) for line in out.splitlines() if line)]
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return [Gpu(i, "NVIDIA GPU") for i, _ in enumerate(sorted(proc.iterdir()))]
    return []


def select(gpus_arg: str, found: list[Gpu]) -> list[Gpu]:
    """What `--gpus all|none|0,1` picks from the GPUs found; an empty list means one CPU worker."""
    arg = gpus_arg.strip().lower()
    if arg == "none":
        return []
    if arg == "all":
        return found
    try:
        wanted = [int(p) for p in arg.split(",") if p.strip()]
    except ValueError:
        raise BadInput(f"--gpus: expected all, none or indices like 0,1 (got {gpus_arg!r})") from None
    by_index = {g.index: g for g in found}
    missing = [i for i in wanted if i not in by_index]
    if missing:
        have = ", ".join(str(g.index) for g in found) or "none"
        raise BadInput(f"--gpus: no GPU {', '.join(map(str, missing))} on this node (found: {have})")
    return [by_index[i] for i in dict.fromkeys(wanted)]


def describe_torch_device(device: torch.device) -> str:
    """A readable name for a torch.device: the GPU's name, or `cpu`."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def gpu_memory() -> tuple[int, int] | None:
    """(free, total) bytes of this process's GPU, once CUDA is up; None on a CPU worker."""
    import torch

    # torch leaves is_initialized unannotated
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        return None
    return torch.cuda.mem_get_info(0)
