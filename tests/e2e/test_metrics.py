"""`tensorq metrics` seen by a real Prometheus (Debian's `prometheus`, started here on a free loopback port with a
generated config), a real worker draining real jobs, and the Grafana dashboard's queries checked against both;
plus the cost of a scrape, counted in Redis commands, with 100 and with 100,000 jobs in the store."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import (
    REPO,
    RedisServer,
    free_port,
    start_launcher,
    start_redis,
    stop_process,
    tq_env,
    wait_until,
)

DASHBOARD = REPO / "deploy" / "grafana" / "tensorq.json"
LOOPBACK = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\]):\d+$")


def http_get(url: str, timeout_s: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310 - loopback only
        return reply.read().decode()


def answers(url: str) -> bool:
    try:
        http_get(url, 2)
        return True
    except OSError:
        return False


@dataclass
class Observed:
    redis: RedisServer
    home: Path
    logs: Path
    metrics_url: str
    prometheus_url: str

    def query(self, promql: str) -> dict:
        """An instant query through Prometheus' HTTP API."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            return json.loads(http_get(url))
        except urllib.error.HTTPError as e:  # a bad query answers 400 with the reason as JSON
            return json.loads(e.read().decode())

    def value(self, promql: str) -> float | None:
        """The query's single value (None while Prometheus has no sample for it)."""
        reply = self.query(promql)
        assert reply["status"] == "success", reply
        result = reply["data"]["result"]
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> Iterator[Observed]:
    """Redis, `tensorq metrics` on a free loopback port, and Prometheus scraping it (and nothing else) every second."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "the metrics test needs Debian's prometheus (scripts/test.sh installs it)"
    tmp = tmp_path_factory.mktemp("metrics")
    server = start_redis(tmp / "redis")
    home = tmp / "home"
    procs: list[subprocess.Popen] = []
    try:
        port = free_port()
        exporter_log = open(tmp / "exporter.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen([sys.executable, "-m", "producer", "metrics", "--port", str(port)],
                                      env=tq_env(server.url, home), stdout=exporter_log,
                                      stderr=subprocess.STDOUT, cwd=REPO))
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: answers(metrics_url), 30, "tensorq metrics")
        config = tmp / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML: a generated config, scraping only the exporter
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "tensorq", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }))
        prom_port = free_port()
        prom_log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{prom_port}"],
                                      stdout=prom_log, stderr=subprocess.STDOUT))
        prometheus_url = f"http://127.0.0.1:{prom_port}"
        wait_until(lambda: answers(f"{prometheus_url}/-/ready"), 60, "prometheus")
        yield Observed(server, home, tmp, metrics_url, prometheus_url)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        stop_process(server.proc)


def test_prometheus_sees_the_queue_fill_and_drain(observed: Observed, monkeypatch):
    """
    Given Prometheus scraping `tensorq metrics`, and no worker
    When 10 op jobs are queued on `cpu`, 3 of them high priority
    Then PromQL says depth 10 (3 high) and an oldest age above 0
    When a real CPU worker starts
    Then PromQL says depth 0, 10 op jobs succeeded, 10 run times observed and one cpu worker.
    """
    from producer.client import Client
    from shared.keys import Keys
    from shared.registry import NodeRegistry

    def targets() -> list[dict]:
        return json.loads(http_get(f"{observed.prometheus_url}/api/v1/targets"))["data"]["activeTargets"]
    wait_until(targets, 30, "Prometheus' targets")
    assert all(LOOPBACK.match(t["labels"]["instance"]) for t in targets()), targets()

    monkeypatch.setenv("TENSORQ_BROKER_URL", observed.redis.url)
    client = Client(observed.redis.url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no live worker consumes queue 'cpu'": none yet, on purpose
        for i in range(10):
            client.submit_op("add", [[1, 2]], [[i, i]], device="cpu", priority="high" if i < 3 else "normal")

    def queued() -> bool:
        return observed.value('sum(tensorq_queue_depth{queue="cpu"})') == 10
    wait_until(queued, 30, "depth 10 in Prometheus")
    assert observed.value('tensorq_queue_depth{queue="cpu", priority="high"}') == 3
    assert observed.value('tensorq_queue_depth{queue="cpu", priority="normal"}') == 7
    assert observed.value('tensorq_queue_depth{queue="cpu", priority="low"}') == 0
    time.sleep(1.2)
    wait_until(lambda: (observed.value('tensorq_queue_oldest_seconds{queue="cpu"}') or 0) > 1, 10, "an age")
    assert observed.value('tensorq_jobs{kind="op", state="queued"}') == 10

    registry = NodeRegistry(observed.redis.client(), Keys())
    launcher = start_launcher(observed.redis.url, observed.home, observed.logs / "worker.log", "--gpus", "none",
                              registry=registry)
    try:
        def drained() -> bool:
            return (observed.value('sum(tensorq_queue_depth{queue="cpu"})') == 0
                    and observed.value('tensorq_jobs{kind="op", state="succeeded"}') == 10)
        wait_until(drained, 90, "the queue drained in Prometheus")
        assert observed.value('tensorq_queue_oldest_seconds{queue="cpu"}') == 0
        assert observed.value('tensorq_jobs{kind="op", state="queued"}') == 0
        assert observed.value('tensorq_jobs_finished_total{kind="op", state="succeeded"}') == 10
        assert observed.value('tensorq_job_run_seconds_count{kind="op"}') == 10
        assert observed.value('tensorq_job_wait_seconds_count{kind="op"}') == 10
        assert observed.value('tensorq_failures_total{kind="op"}') == 0
        assert observed.value('tensorq_workers{device="cpu"}') == 1
    finally:
        stop_process(launcher.proc, 40)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, Grafana's interval variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$__interval", "1m")
            out.append((panel["title"], expr))
    return out


def metric_names(exposition: str) -> set[str]:
    """Every series name the exporter's text output offers (a histogram's _bucket, _sum and _count too)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def test_every_dashboard_query_uses_real_metrics_and_parses(observed: Observed):
    """
    Given the Grafana dashboard deploy/grafana/tensorq.json
    When each panel's PromQL is read
    Then every tensorq metric it names is in the exporter's real /metrics output
    And Prometheus accepts each query.
    """
    queries = dashboard_queries()
    assert len(queries) >= 8, "queue depth, oldest age, jobs, throughput, run and wait times, workers, GPU memory"
    offered = metric_names(http_get(observed.metrics_url))
    for title, expr in queries:
        used = set(re.findall(r"\btensorq_[a-zA-Z0-9_]+", expr))
        assert used, f"panel {title!r} queries no tensorq metric: {expr}"
        assert used <= offered, f"panel {title!r} uses {sorted(used - offered)}, which /metrics does not offer"
        reply = observed.query(expr)
        assert reply["status"] == "success", f"panel {title!r}: Prometheus refused {expr!r}: {reply.get('error')}"


def command_calls(r) -> int:
    """Commands Redis has run so far (INFO commandstats), less the INFO calls that asked."""
    found = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in found.items() if k != "cmdstat_info")


def test_a_scrape_costs_the_same_with_100_and_100000_jobs(tmp_path):
    """
    Given a store with 100 job records, then with 100,000 (half of them finished)
    When the exporter's collector is scraped
    Then the scrape issues the same number of Redis commands at both sizes (O(queues + workers), not O(jobs))
    And so does a filtered `list`.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from producer.exporter import TensorqCollector
    from shared.keys import Keys
    from shared.registry import NodeRegistry
    from shared.store import Ending, JobStore
    from shared.vocab import JobState

    server = start_redis(tmp_path / "redis")
    try:
        r, keys = server.client(), Keys()
        store = JobStore(r, keys, tmp_path)
        nodes = NodeRegistry(r, keys)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TensorqCollector(store, nodes))
        made = 0

        def fill(total: int) -> None:
            nonlocal made
            while made < total:
                n = min(5_000, total - made)
                batch = [(f"{made + i:016x}", "op" if i % 2 else "train", {"kind": "op"}, "gpu", {}) for i in range(n)]
                store.create_many(batch)
                store.mark_finished_many([Ending(j, JobState.SUCCEEDED) for j, *_ in batch[::2]])  # the trains
                made += n

        costs = {}
        for size in (100, 100_000):
            fill(size)
            nodes.beat("gpu0@a", {"device": "NVIDIA H200", "queues": "gpu.high,gpu,gpu.low,big", "state": "running",
                                  "memory_free_bytes": 10, "memory_total_bytes": 100})  # fresh: filling takes a while
            generate_latest(registry)  # warm: connections
            before = command_calls(r)
            text = generate_latest(registry).decode()
            scrape = command_calls(r) - before
            before = command_calls(r)
            assert len(store.list("succeeded", 5, "train")) == 5
            listing = command_calls(r) - before
            costs[size] = (scrape, listing)
            assert f'tensorq_jobs{{kind="train",state="succeeded"}} {float(size // 2)}' in text
        assert costs[100] == costs[100_000], costs
        assert costs[100][0] < 60, costs
    finally:
        stop_process(server.proc)
