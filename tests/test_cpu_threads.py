"""A CPU job's thread count (worker/cpu_share.py): torch's own when the box is quiet, the cores left while other
processes keep them busy, a fixed count when the worker was given one; and what the launcher tells OpenMP."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from worker import cpu_share
from worker.cpu_share import CpuShare, threads_for
from worker.launcher import cpu_env

CPU = torch.device("cpu")


@pytest.mark.parametrize(("others", "cores", "most", "expected"), [
    (0.0, 2, 2, 2),  # quiet: torch's own count
    (0.4, 2, 2, 2),  # a little housekeeping beside it takes no core
    (0.7, 2, 2, 1),  # one busy neighbour on a 2-core box: the free core
    (1.9, 2, 2, 1),  # never fewer than one
    (3.0, 8, 8, 5),
    (0.0, 8, 4, 4),  # never more than torch's own
])
def test_threads_are_the_cores_the_rest_of_the_box_leaves(others: float, cores: int, most: int,
                                                           expected: int) -> None:
    assert threads_for(others, cores, most) == expected


class Box:
    """A clock, the box's busy seconds and this process's, moved by hand."""

    def __init__(self) -> None:
        self.now = self.busy = self.own = 0.0
        self.threads = 2
        self.sets: list[int] = []

    def share(self) -> CpuShare:
        return CpuShare(2, 2, busy=lambda: self.busy, own=lambda: self.own, clock=lambda: self.now, every_s=0.2,
                        set_threads=self.set, get_threads=lambda: self.threads)

    def set(self, n: int) -> None:
        self.threads = n
        self.sets.append(n)

    def run(self, share: CpuShare, seconds: float, mine: float, others: float) -> None:
        """`seconds` of this process using `mine` cores and the rest `others`, the share called as a loop would."""
        for _ in range(round(seconds / 0.01)):
            self.now += 0.01
            self.own += 0.01 * mine
            self.busy += 0.01 * (mine + others)
            share()


def test_a_busy_neighbour_takes_a_thread_away_and_leaving_gives_it_back() -> None:
    box = Box()
    share = box.share()
    box.run(share, 1.0, mine=2.0, others=0.05)
    assert box.sets == []  # quiet: never touched
    box.run(share, 0.25, mine=1.3, others=0.7)  # a neighbour arrives: one sample later, one thread
    assert box.threads == 1
    box.run(share, 1.0, mine=1.0, others=1.0)
    assert box.sets == [1]  # steady beside it
    box.run(share, 0.25, mine=1.0, others=0.0)  # gone again
    assert box.threads == 2 and box.sets == [1, 2]


def test_a_count_set_by_someone_else_is_left_alone() -> None:
    box = Box()
    share = box.share()
    box.threads = 1  # a job function's own torch.set_num_threads(1)
    box.run(share, 1.0, mine=1.0, others=0.0)
    assert box.sets == []


def test_a_fixed_count_or_a_gpu_is_not_steered() -> None:
    assert cpu_share.steering(CPU, environ={"OMP_NUM_THREADS": "1"}) is cpu_share.nothing
    assert cpu_share.steering(torch.device("cuda", 0), environ={}) is cpu_share.nothing


def test_a_job_starts_with_torchs_own_count_whatever_the_last_one_left() -> None:
    torch.set_num_threads(1)
    try:
        assert isinstance(cpu_share.steering(CPU, environ={}), CpuShare)
        assert torch.get_num_threads() == cpu_share.TORCH_THREADS
        torch.set_num_threads(1)
        assert cpu_share.steering(CPU, exact=False, environ={}) is cpu_share.nothing  # kept, not steered
        assert torch.get_num_threads() == cpu_share.TORCH_THREADS
    finally:
        torch.set_num_threads(cpu_share.TORCH_THREADS)


def test_sums_too_large_for_one_thread_keep_the_count() -> None:
    assert cpu_share.sums_stay_exact(64, 10)  # the note's loss: 640 terms
    assert not cpu_share.sums_stay_exact(4096, 10)  # torch splits a sum of 40,960 between its threads


def test_sums_below_the_grain_give_the_same_bits_at_any_count() -> None:
    """What sums_stay_exact relies on: torch adds up fewer than TORCH_REDUCTION_GRAIN terms on one thread."""
    if cpu_share.TORCH_THREADS < 2:
        pytest.fail("this needs a box with two cores or more")
    torch.manual_seed(0)
    small = torch.randn(64 * 10) * 1000
    sums = []
    for n in (1, cpu_share.TORCH_THREADS):
        torch.set_num_threads(n)
        sums.append(small.pow(2).sum())
    torch.set_num_threads(cpu_share.TORCH_THREADS)
    assert torch.equal(sums[0], sums[1])


def test_beside_real_busy_processes_a_job_runs_on_the_core_left() -> None:
    """Real /proc/stat: as many spinning processes as the box has cores, started as another terminal would."""
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.fail("this needs a box with two cores or more")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                for _ in range(cores)]
    try:
        time.sleep(0.3)
        share = CpuShare(cores, cores, set_threads=lambda n: None, get_threads=lambda: share.threads)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            sum(range(10_000))  # this job's own work
            share()
        assert share.threads == 1
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def test_the_launcher_fixes_a_count_only_when_given_one() -> None:
    assert cpu_env(None) == {}
    assert cpu_env(1) == {"OMP_NUM_THREADS": "1"}
