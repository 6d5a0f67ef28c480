"""`python -m bench --quick --json` runs end to end (its own Redis and workers) and reports every benchmark
as a ratio against its goal. A smoke run: it checks the report, never the speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.stack import REPO

NAMES = {"tiny op jobs/s, one message each", "tiny op jobs/s, batched (client.map_op + gather)",
         "tiny op jobs/s, `submit op --many FILE.jsonl --wait`", "training job wall time vs the loop inline",
         "loss recording on vs off, in the loop", "evaluation every 100 iterations vs none, digits full batch",
         "ctx.report every step (a 0-d tensor) of a ~300 us step vs no report",
         "`tensorq --help` start-up", "`tensorq status JOB` start-up"}


@pytest.mark.timeout(660)  # a minute alone; several on a loaded 2-core machine (the subprocess has 600 s)
def test_the_quick_benchmark_reports_every_ratio_against_its_goal() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    report = json.loads(done.stdout)
    results = report["results"]
    assert {r["name"] for r in results} == NAMES
    for r in results:
        assert r["tensorq"] > 0 and r["yardstick"] > 0 and r["ratio"] > 0, r
        op, goal = r["goal"].split()
        assert r["met"] == (r["ratio"] >= float(goal) if op == ">=" else r["ratio"] <= float(goal)), r
    assert done.returncode == (0 if all(r["met"] for r in results) else 1), done.stderr[-2000:]
    assert report["quick"] is True and report["machine"]
    assert report["noise_floor"]["ratio"] > 0
