"""How tensorq starts its own Python processes (workers, Flower, the launcher `tensorq up` spawns): never
importing from the working directory.

`python -m MODULE` puts the working directory first on sys.path, and Celery puts it there again while it
imports the app (`-A worker.app`): started from a user's project that has its own `shared/`, `worker/` or
`producer/` folder, a child would import those instead of tensorq's, and crash-loop. So each child runs a
short bootstrap that drops the working directory from sys.path, imports tensorq's three packages (so every
later import of theirs, Celery's included, resolves to them), and then runs the module as `-m` would.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGES = ("shared", "worker", "producer")
# Where tensorq's packages are: put back last when it is the working directory (a clone run uninstalled).
ROOT = str(Path(__file__).resolve().parents[1])
BOOTSTRAP = (
    "import os, runpy, sys\n"
    "here = {'', '.', os.getcwd()}\n"
    "sys.path[:] = [p for p in sys.path if p not in here] + [sys.argv.pop(1)]\n"
    f"for name in {PACKAGES!r}:\n"
    "    __import__(name)\n"
    "module = sys.argv.pop(1)\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)


def python_module(module: str, *args: str) -> list[str]:
    """The argv for `python -m MODULE ARGS` with this interpreter, minus the working directory's modules."""
    return [sys.executable, "-c", BOOTSTRAP, ROOT, module, *args]
