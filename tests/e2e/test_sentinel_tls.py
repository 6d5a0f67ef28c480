"""Redis Sentinel over TLS end to end: one `sentinels://` URL for the CLI and a real worker, the Sentinels and
both Redis servers listening on TLS ports only (tests/support/sentinel.py with `tls=`), the replica and the
Sentinels reaching the servers over TLS too.

The URL names the three Sentinels and the CA (`ssl_ca_certs=`, read once by shared/redis_conn.py
`tls_options`); every connection, to a Sentinel or to the primary it names, checks the server's certificate.
Needs a redis-server built with TLS (tests/support/tls.py `tls_redis_server_binary`): fails without one, as the
other TLS tests do (scripts/test.sh installs Debian's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.keys import Keys
from shared.redis_conn import connect
from shared.registry import NodeRegistry
from shared.settings import Settings
from tests.support.cli import Cli, assert_one_line_error
from tests.support.processes import Launcher, start_launcher, stop_process, tq_env
from tests.support.sentinel import SentinelSet, TlsFiles, start_sentinel_set
from tests.support.tls import make_ca, make_server_cert, tls_redis_server_binary
from tests.support.training import FLAGS, expected_losses

TRAIN_ITERATIONS, TRAIN_SEED = 30, 3


@dataclass
class TlsSentinelFleet:
    sentinels: SentinelSet
    worker: Launcher
    cli: Cli
    other_ca: Path
    home: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSentinelFleet]:
    """A TLS-only primary, replica and three Sentinels, and a real `tensorq worker --gpus none` on them."""
    binary, tried = tls_redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server built with TLS was found, so TLS Sentinels cannot be tested (install Debian's "
                    "redis-server package or set TENSORQ_TEST_TLS_REDIS=/path/to/redis-server); tried: "
                    + "; ".join(tried), pytrace=False)
    tmp = tmp_path_factory.mktemp("sentinel-tls")
    ca = make_ca(tmp / "pki", "ca")
    cert, key = make_server_cert(tmp / "pki", ca)
    other_ca, _ = make_ca(tmp / "other-pki", "other-ca")
    started = start_sentinel_set(tmp / "set", tls=TlsFiles(ca[0], cert, key, binary))
    try:
        home = tmp / "home"
        registry = NodeRegistry(connect(Settings(started.url, "env", home)), Keys())
        worker = start_launcher(started.url, home, tmp / "worker.log", "--gpus", "none", registry=registry)
        try:
            yield TlsSentinelFleet(started, worker, Cli(tq_env(started.url, home)), other_ca, home)
        finally:
            stop_process(worker.proc, 40)
    finally:
        started.stop()


def submit_op(cli: Cli) -> None:
    done = cli("submit", "op", "add", "1", "2", "--device", "cpu", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["worker"].startswith("cpu"), job
    result = cli("result", job["id"], "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == 3


def test_a_worker_serves_cli_jobs_through_sentinels_over_tls(fleet) -> None:
    """Given TLS-only Sentinels and Redis, and a worker started with the `sentinels://` URL, when the CLI
    submits an op job and a short training job with the same URL and waits, then both succeed: the op's
    result is 1 + 2, the training's history equals the note's loop inline; the worker's log has no traceback
    and no sign of certificate checks turned off."""
    assert fleet.sentinels.url.startswith("sentinels://") and "ssl_ca_certs=" in fleet.sentinels.url
    submit_op(fleet.cli)

    done = fleet.cli("submit", "train", *FLAGS, "--iterations", str(TRAIN_ITERATIONS), "--seed", str(TRAIN_SEED),
                     "--device", "cpu", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["summary"]["iterations"] == TRAIN_ITERATIONS, job
    history = fleet.cli("history", job["id"], "--format", "json")
    assert history.returncode == 0, history.stderr
    assert list(json.loads(history.stdout)["loss"]) == expected_losses(TRAIN_ITERATIONS, TRAIN_SEED)

    log = fleet.worker.log.read_text(errors="replace")
    assert "Traceback" not in log and "insecure" not in log.lower(), log[-3000:]


def test_a_wrong_ca_is_one_line_in_seconds(fleet, tmp_path) -> None:
    """Given the Sentinels' certificates signed by one CA, when the CLI trusts another, then it exits 3 with
    one line in seconds: no traceback, no hang on retries."""
    url = fleet.sentinels.url.replace(str(fleet.sentinels.tls.ca), str(fleet.other_ca))
    assert str(fleet.other_ca) in url
    started = time.monotonic()
    done = Cli(tq_env(url, tmp_path / "home"))("list", timeout=30)
    took = time.monotonic() - started
    assert_one_line_error(done, 3, "TLS handshake failed (certificate verify failed")
    assert done.stderr.startswith("error: broker unreachable at sentinels://127.0.0.1:"), done.stderr
    assert took < 15, f"a wrong CA took {took:.1f} s to report"
    print(f"\nwrong CA: {done.stderr.strip()} ({took:.2f} s)")


def test_after_a_sigkill_of_the_primary_a_job_still_succeeds_over_tls(fleet) -> None:
    """Given the idle worker, when the primary is killed (SIGKILL) and the Sentinels promote the replica
    (over TLS), then a job submitted afterwards is served end to end through the new primary. Last: it
    leaves the set with the replica as its primary."""
    killed_at = fleet.sentinels.kill_primary()
    fleet.sentinels.wait_for_failover(30)
    print(f"\nkill -9 of the primary -> the replica promoted over TLS: {time.monotonic() - killed_at:.2f} s")
    submit_op(fleet.cli)
    assert fleet.sentinels.primary_port() == fleet.sentinels.replica.port
    log = fleet.worker.log.read_text(errors="replace")
    for never in ("Unrecoverable error", "Traceback"):
        assert never not in log, f"{never!r} in the worker's log:\n{log[-4000:]}"
