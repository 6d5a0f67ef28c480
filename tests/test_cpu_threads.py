"""What a CPU worker's OpenMP runtime is told (worker/launcher.cpu_env): its thread count when given, and a
short spin before its threads sleep unless the user already chose how they wait."""

from __future__ import annotations

from shared import defaults
from worker.launcher import cpu_env


def test_by_default_threads_are_torchs_and_they_spin_briefly() -> None:
    assert cpu_env(None, {}) == {"GOMP_SPINCOUNT": str(defaults.CPU_SPIN_COUNT)}


def test_cpu_threads_sets_the_openmp_thread_count() -> None:
    assert cpu_env(1, {})["OMP_NUM_THREADS"] == "1"


def test_a_users_own_wait_policy_wins() -> None:
    assert "GOMP_SPINCOUNT" not in cpu_env(2, {"OMP_WAIT_POLICY": "PASSIVE"})
    assert "GOMP_SPINCOUNT" not in cpu_env(None, {"GOMP_SPINCOUNT": "0"})
