"""Redis passwords and TLS end to end: real redis-servers, a real `tensorq worker`, the CLI, Flower.

One broker URL carries everything (`redis://:PASS@...`, `rediss://:PASS@...?ssl_ca_certs=CA`) and works for
every process: the CLI's redis-py client and Celery producer, the worker's children, Flower. The password
never shows: not in logs, not in JSON, not in errors. Over TLS the server's certificate is always checked.

TLS needs a redis-server built with TLS (Debian's redis-server package is); without one these tests fail,
saying so, rather than skip. The certificates are made with the openssl command in a temporary folder.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.keys import Keys
from shared.registry import NodeRegistry
from tests.support.cli import PROCESS_COMMANDS, Cli, assert_one_line_error
from tests.support.processes import REPO, Launcher, Tq, free_port, start_launcher, stop_process, tq_env, wait_until
from tests.support.tls import PASSWORD, URL_PASSWORD, SecureRedis, start_secure_redis

SECRETS = (PASSWORD, URL_PASSWORD)
FLOWER_LOGIN = ("tester", "flower-pw")


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"the broker password shows in {where}:\n{text[:3000]}"


def registry_for(server: SecureRedis) -> NodeRegistry:
    return NodeRegistry(server.client(), Keys())


@dataclass
class Fleet:
    """A broker and one real CPU worker on it, with the CLI pointed at the same URL."""

    redis: SecureRedis
    worker: Launcher
    cli: Cli
    home: Path


@pytest.fixture(scope="module")
def password_fleet(tmp_path_factory) -> Iterator[Fleet]:
    """redis-server --requirepass PASSWORD, a `tensorq worker --gpus none` on it, and the CLI's environment."""
    tmp = tmp_path_factory.mktemp("password")
    port = free_port()
    url = f"redis://:{URL_PASSWORD}@127.0.0.1:{port}/0"
    server = start_secure_redis(tmp / "redis", url, "--port", str(port), "--requirepass", PASSWORD)
    home = tmp / "home"
    try:
        worker = start_launcher(url, home, tmp / "worker.log", "--gpus", "none", registry=registry_for(server))
        try:
            yield Fleet(server, worker, Cli(tq_env(url, home)), home)
        finally:
            stop_process(worker.proc, 40)
    finally:
        stop_process(server.proc)


# --- a password ---------------------------------------------------------------------------------------

def test_a_worker_serves_a_cli_job_on_a_password_broker_and_the_password_never_shows(password_fleet) -> None:
    """Given Redis with a password and a worker started with the URL carrying it,
    when the CLI submits a training job and waits,
    then the job succeeds, and the password is in none of the worker's log, `workers`, `status`, `list`."""
    cli = password_fleet.cli
    done = cli("submit", "train", "--iterations", "20", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["summary"]["iterations"] == 20
    assert_no_secret(done.stdout + done.stderr, "submit's output")

    workers = cli("workers", "--json")
    assert workers.returncode == 0, workers.stderr
    assert [n["name"] for n in json.loads(workers.stdout)] == [job["worker"]]
    assert_no_secret(workers.stdout + workers.stderr, "`tensorq workers --json`")

    status = cli("status", job["id"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["id"] == job["id"], status.stderr
    assert_no_secret(status.stdout + status.stderr, "`tensorq status --json`")

    listed = cli("list", "--json")
    assert listed.returncode == 0 and job["id"] in listed.stdout, listed.stderr
    assert_no_secret(listed.stdout + listed.stderr, "`tensorq list --json`")

    log = password_fleet.worker.log.read_text(errors="replace")
    assert "ready" in log and "Traceback" not in log, log[-3000:]
    assert_no_secret(log, "the worker's log")


@pytest.mark.parametrize("password", ["wrong-pw", ""], ids=["wrong", "missing"])
def test_a_wrong_or_missing_password_is_exit_3_and_masked(password_fleet, tmp_path, password) -> None:
    """Given Redis with a password, when the CLI brings a wrong one (or none),
    then it exits 3 with one line that names the broker with its password masked."""
    port = password_fleet.redis.url.rsplit(":", 1)[1].split("/")[0]
    userinfo = f":{password}@" if password else ""
    done = Cli(tq_env(f"redis://{userinfo}127.0.0.1:{port}/0", tmp_path))("list", timeout=30)
    assert_one_line_error(done, 3, f"127.0.0.1:{port}/0")
    if password:
        assert ":***@" in done.stderr and password not in done.stderr
    assert_no_secret(done.stderr, "the error")


@pytest.mark.parametrize("command", [["status", "abc"], ["worker", "--gpus", "none"]])
@pytest.mark.parametrize("url", [
    f"redis://:{URL_PASSWORD}@127.0.0.1:1/0",
    f"rediss://:{URL_PASSWORD}@127.0.0.1:1/0?ssl_ca_certs={{ca}}",
    f"rediss://user:{URL_PASSWORD}@127.0.0.1:1/0?password={URL_PASSWORD}",
], ids=["redis", "rediss", "query-password"])
def test_an_unreachable_broker_error_never_shows_the_password(tmp_path, command, url) -> None:
    """Given nothing listening, when a command needs the broker, then exit 3: one line, the password masked
    (also one given as ?password=)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("never read: nothing answers on port 1\n")
    env = tq_env(url.format(ca=ca), tmp_path)
    done = (Tq(env) if command[0] in PROCESS_COMMANDS else Cli(env))(*command, timeout=30)
    assert_one_line_error(done, 3, "broker unreachable at ")
    assert ":***@127.0.0.1:1/0" in done.stderr
    assert_no_secret(done.stderr + done.stdout, "the error")


# --- TLS ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_fleet(tls, tmp_path_factory) -> Iterator[Fleet]:
    """A real `tensorq worker --gpus none` whose every connection (launcher, Celery, heartbeats) is TLS."""
    tmp = tmp_path_factory.mktemp("tls-fleet")
    home = tmp / "home"
    worker = start_launcher(tls.redis.url, home, tmp / "worker.log", "--gpus", "none",
                            registry=registry_for(tls.redis))
    try:
        yield Fleet(tls.redis, worker, Cli(tq_env(tls.redis.url, home)), home)
    finally:
        stop_process(worker.proc, 40)


def test_the_tls_server_refuses_plain_tcp(tls, tmp_path) -> None:
    """Given the TLS port, when a client speaks plain redis:// to it, then it cannot get in (exit 3)."""
    done = Cli(tq_env(f"redis://:{URL_PASSWORD}@127.0.0.1:{tls.port}/0", tmp_path))("list", timeout=30)
    assert_one_line_error(done, 3, "broker unreachable")


def test_a_worker_serves_a_cli_job_over_tls(tls_fleet) -> None:
    """Given a TLS broker and a worker on it, when the CLI submits over TLS and waits, then the job succeeds;
    the password shows neither in the worker's log nor in the CLI's output."""
    done = tls_fleet.cli("submit", "train", "--iterations", "20", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["summary"]["iterations"] == 20
    workers = tls_fleet.cli("workers", "--json")
    assert workers.returncode == 0 and job["worker"] in workers.stdout, workers.stderr
    log = tls_fleet.worker.log.read_text(errors="replace")
    assert "rediss://" in log and "Traceback" not in log, log[-3000:]
    assert "insecure" not in log.lower(), log[-3000:]  # kombu's warning when it turns certificate checks off
    for text, where in ((done.stdout + done.stderr, "submit"), (workers.stdout, "workers"), (log, "the log")):
        assert_no_secret(text, where)


def http_get(url: str, login: tuple[str, str] | None = FLOWER_LOGIN) -> tuple[int, str]:
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(login).encode()).decode()} if login else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_flower_over_tls_sees_the_worker_and_the_queues(tls_fleet, tmp_path) -> None:
    """Given a TLS broker with a worker, when `tensorq flower` starts on the same URL,
    then /healthcheck answers, the worker's events arrive over TLS (it shows online in /metrics),
    and the broker view reads queue lengths over TLS; Flower's log never shows the password."""
    port = free_port()
    log = tmp_path / "flower.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "producer", "flower", "--port", str(port), "--no-persistent",
                                 "--basic-auth", ":".join(FLOWER_LOGIN)],
                                env=tls_fleet.cli.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    node = registry_for(tls_fleet.redis).live()[0]["name"]
    try:
        def answers(path: str, fragment: str) -> bool:
            assert proc.poll() is None, f"flower exited with {proc.returncode}; log:\n{log.read_text()}"
            try:
                status, body = http_get(base + path)
            except OSError:  # not listening yet
                return False
            return status == 200 and fragment in body

        wait_until(lambda: answers("/healthcheck", "OK"), 60, "flower /healthcheck")
        wait_until(lambda: answers("/metrics", f'flower_worker_online{{worker="{node}"}} 1.0'), 30,
                   f"Flower seeing {node} online")
        status, body = http_get(base + "/api/queues/length")
        assert status == 200, body[:2000]
        assert {"name": "cpu", "messages": 0} in json.loads(body)["active_queues"], body[:2000]
    finally:
        stop_process(proc)
    assert_no_secret(log.read_text(errors="replace"), "Flower's log")


@pytest.mark.parametrize("command", [
    ["list"], ["submit", "train", "--iterations", "3"], ["worker", "--gpus", "none"], ["flower", "--no-persistent"],
])
@pytest.mark.parametrize("trust", ["other-ca", "system-cas"])
def test_a_client_that_does_not_trust_the_ca_is_refused(tls, tmp_path, command, trust) -> None:
    """Given the TLS broker, when a process trusts another CA (or only the system's, by giving no CA at all),
    then the certificate check fails the handshake: exit 3, one line saying so, the password masked."""
    url = tls.url(ca=tls.other_ca) if trust == "other-ca" else tls.url(query="")
    if command[0] == "flower":
        command = [*command, "--port", str(free_port())]
    env = tq_env(url, tmp_path)
    done = (Tq(env) if command[0] in PROCESS_COMMANDS else Cli(env))(*command, timeout=30)
    assert_one_line_error(done, 3, "certificate verify failed")
    assert f"rediss://:***@127.0.0.1:{tls.port}/0" in done.stderr
    assert_no_secret(done.stderr + done.stdout, "the error")


def test_a_bad_tls_option_is_a_one_line_error(tls, tmp_path) -> None:
    """Given a misspelt TLS option, a TLS option on a redis:// URL, or a CA file that is not there,
    then exit 3 and one line saying which."""
    done = Cli(tq_env(tls.url(query=f"ssl_ca_cert={tls.ca}"), tmp_path))("list", timeout=30)
    assert_one_line_error(done, 3, "unknown TLS option ssl_ca_cert")
    done = Cli(tq_env(f"redis://127.0.0.1:{tls.port}/0?ssl_ca_certs={tls.ca}", tmp_path))("list", timeout=30)
    assert_one_line_error(done, 3, "TLS options need a rediss:// URL")
    done = Cli(tq_env(tls.url(ca=tmp_path / "missing.pem"), tmp_path))("list", timeout=30)
    assert_one_line_error(done, 3, f"ssl_ca_certs: no readable file {tmp_path / 'missing.pem'}")
