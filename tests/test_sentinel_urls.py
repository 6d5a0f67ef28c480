"""One sentinel:// URL for every process (shared/sentinel.py): how it is read, what redis-py, kombu and Flower
are given, that every password form is masked, and that a malformed one is one line with exit 2. In-process, no
server (tests/e2e/test_sentinel.py runs real Sentinels)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
import redis

from shared import broker_errors, sentinel
from shared.celery_app import celery_config, make_celery
from shared.errors import BadInput
from shared.redis_conn import connect, tls_options
from shared.settings import Settings, mask_url, resolve, scrub, secrets_of
from tests.support.cli import Cli
from tests.support.processes import tq_env

THREE = "sentinel://:r%2Fpw@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/2?master_name=main"


def settings(url: str) -> Settings:
    return Settings(url, "env", Path("/nonexistent"))


def test_the_one_url_names_the_sentinels_the_primary_the_database_and_redis_password() -> None:
    url = sentinel.parse(f"{THREE}&sentinel_password=s%26pw&sentinel_username=watch")
    assert url.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert (url.master_name, url.db, url.tls) == ("main", 2, False)
    assert (url.username, url.password) == (None, "r/pw")  # %-decoded
    assert (url.sentinel_username, url.sentinel_password) == ("watch", "s&pw")


@pytest.mark.parametrize("url,expected", [
    # Redis's password as a query parameter instead of the userinfo; a user too
    ("sentinel://h1;sentinel://h2/0?master_name=m&password=pw&username=bob", ("bob", "pw", 0)),
    ("sentinel://bob:pw@h1;sentinel://bob:pw@h2/0?master_name=m&password=pw", ("bob", "pw", 0)),  # agreeing
    # kombu's spelling: the database on every Sentinel
    ("sentinel://h1:1/3;sentinel://h2:2/3?master_name=m", (None, None, 3)),
    ("sentinel://[::1]:26379/0?master_name=m", (None, None, 0)),  # one Sentinel, IPv6
])
def test_other_spellings(url: str, expected: tuple) -> None:
    parsed = sentinel.parse(url)
    assert (parsed.username, parsed.password, parsed.db) == expected


@pytest.mark.parametrize("url,problem", [
    ("sentinel://h1;sentinel://h2/0", "no master_name"),
    ("sentinel://h1?master_name=m;sentinel://h2/0", "goes after the last Sentinel"),
    ("sentinel://h1:x;sentinel://h2/0?master_name=m", "Sentinel 1: the port must be a number"),
    ("sentinel://h1:99999/0?master_name=m", "the port must be a number"),
    ("sentinel://;sentinel://h2/0?master_name=m", "Sentinel 1: no host"),
    ("sentinel://h1/1;sentinel://h2/2?master_name=m", "different databases (1, 2)"),
    ("sentinel://h1/zero?master_name=m", "the database must be a number"),
    ("sentinel://h1;sentinels://h2/0?master_name=m", "the same scheme"),
    ("sentinel://h1/0?master_name=m&sentinel_pass=x", "unknown parameter sentinel_pass"),
    ("sentinel://h1/0?master_name=m&ssl_ca_certs=/ca.pem", "TLS options need sentinels://"),
    ("sentinel://:a@h1;sentinel://:b@h2/0?master_name=m", "different Redis credentials"),
    ("sentinel://:a@h1/0?master_name=m&password=b", "different Redis passwords"),
    ("sentinel://h1/0?master_name=my main", "no spaces"),
])
def test_a_malformed_url_says_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(BadInput, match=re.escape(problem)):
        sentinel.parse(url)


def test_a_malformed_url_is_one_line_with_exit_2_and_no_password(tmp_path: Path, monkeypatch) -> None:
    """Given a sentinel URL without master_name, When any command runs, Then it exits 2 with one line that shows the
    URL masked (resolve() reads it before any library does)."""
    bad = "sentinel://:hunter22@h1;sentinel://h2/0?sentinel_password=s3cr3t-s"
    done = Cli(tq_env(bad, tmp_path))("list")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "no master_name" in done.stderr and "Traceback" not in done.stderr
    assert "hunter22" not in done.stderr and "s3cr3t-s" not in done.stderr
    monkeypatch.setenv("TENSORQ_BROKER_URL", bad)
    with pytest.raises(BadInput):
        resolve()
    with pytest.raises(BadInput, match="unknown TLS option"):  # checked where the TLS options are read: exit 2 too
        connect(settings("sentinels://h1/0?master_name=m&ssl_ca_cert=/ca.pem"))


@pytest.mark.parametrize("url,masked,secrets", [
    (f"{THREE}&sentinel_password=s3nt", THREE.replace("r%2Fpw", "***") + "&sentinel_password=***",
     {"r%2Fpw", "r/pw", "s3nt"}),
    # Redis's credentials on every Sentinel (kombu's own spelling), each masked
    ("sentinel://u:p1x@h1;sentinel://u:p1x@h2/0?master_name=m", "sentinel://u:***@h1;sentinel://u:***@h2/0?master_name=m",
     {"p1x"}),
    # an unencoded `@` in the Sentinels' password does not pass for a userinfo's end
    ("sentinel://h1:26379/0?master_name=m&sentinel_password=p@ss&password=x%26y",
     "sentinel://h1:26379/0?master_name=m&sentinel_password=***&password=***", {"p@ss", "x%26y", "x&y"}),
    ("sentinels://:tlspw@h1:26380/0?master_name=m&ssl_ca_certs=/ca.pem",
     "sentinels://:***@h1:26380/0?master_name=m&ssl_ca_certs=/ca.pem", {"tlspw"}),
])
def test_every_password_form_is_masked(url: str, masked: str, secrets: set[str]) -> None:
    assert mask_url(url) == masked
    assert set(secrets_of(url)) == secrets
    assert all(s not in scrub(f"failed on {url} with {s}", url) for s in secrets)


def test_redis_py_gets_the_sentinels_their_password_and_the_primarys() -> None:
    tls = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    url = sentinel.parse("sentinels://:rpw@h1;sentinels://h2/4?master_name=m&sentinel_password=spw")
    own = url.sentinel_kwargs(tls)
    assert own["password"] == "spw" and own["ssl"] is True and own["ssl_ca_certs"] == "/ca.pem"
    assert own["retry"].get_retries() == 0 and own["socket_timeout"] <= 5  # asked once each, quickly
    assert url.master_kwargs(tls) == {"db": 4, "password": "rpw", "ssl": True, **tls}
    plain = sentinel.parse("sentinel://h1/0?master_name=m")
    assert "password" not in plain.sentinel_kwargs(None) and "ssl" not in plain.sentinel_kwargs(None)
    assert plain.master_kwargs(None) == {"db": 0}


def test_a_client_of_the_primary_the_sentinels_name() -> None:
    client = connect(settings(f"{THREE}&sentinel_password=spw"), check=False)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool) and pool.service_name == "main"
    assert pool.connection_kwargs["password"] == "r/pw" and pool.connection_kwargs["db"] == 2
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [
        26379, 26380, 26379]
    assert all(s.connection_pool.connection_kwargs["password"] == "spw" for s in pool.sentinel_manager.sentinels)


def test_celery_and_flower_get_kombus_sentinel_transport() -> None:
    """kombu takes Redis's credentials and the database from whichever Sentinel it is on (it switches on a
    failed connect), so every one carries them; the master name and the Sentinels' own options ride in the
    transport options, which Flower's broker view reads too; TLS goes in broker_use_ssl."""
    url = "sentinels://:r%2Fpw@h1:26379;sentinels://h2/2?master_name=main&sentinel_password=spw&ssl_cert_reqs=none"
    conf = celery_config(settings(url))
    assert conf["broker_url"] == "sentinel://:r%2Fpw@h1:26379/2;sentinel://:r%2Fpw@h2:26379/2"
    options = conf["broker_transport_options"]
    assert options["master_name"] == "main" and options["sentinel_kwargs"]["password"] == "spw"
    assert conf["broker_use_ssl"] == tls_options(url) == {"ssl_cert_reqs": ssl.CERT_NONE}
    with make_celery(settings(url)).connection_for_write() as conn:
        assert type(conn.transport).__name__ == "SentinelTransport" and conn.transport.__module__ == "shared.transport"
        assert conn.password == "r/pw" and len(conn.alt) == 2


@pytest.mark.parametrize("error", [
    redis.sentinel.MasterNotFoundError("No master found for 'main'"),
    redis.ConnectionError("The previous master is now a slave"),  # redis-py's word for a READONLY primary
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.TimeoutError("Timeout connecting to server"),
    redis.ConnectionError("Error 111 connecting to 127.0.0.1:26379. Connection refused."),
])
def test_what_a_failover_raises_is_not_now(error: BaseException) -> None:
    assert broker_errors.not_now(error) is not None


def test_ride_out_waits_through_not_now_errors_for_a_while_only(monkeypatch) -> None:
    monkeypatch.setattr(broker_errors.time, "sleep", lambda s: None)
    calls = iter([redis.ConnectionError("refused"), redis.sentinel.MasterNotFoundError("none"), "served"])

    def flaky() -> str:
        step = next(calls)
        if isinstance(step, Exception):
            raise step
        return step

    assert broker_errors.RideOut(limit_s=60)(flaky) == "served"
    with pytest.raises(ValueError):  # anything else at once
        broker_errors.RideOut(limit_s=60)(int, "x")
    ride = broker_errors.RideOut(limit_s=0)
    with pytest.raises(redis.ConnectionError):  # a broker gone for longer than the limit: as before
        ride(flaky_forever)


def flaky_forever() -> None:
    raise redis.ConnectionError("refused")
