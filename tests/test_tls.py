"""How one broker URL becomes each library's TLS settings (shared/redis_conn.py, shared/celery_app.py), and its
secrets masked: in-process, no server."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from shared.celery_app import celery_config, make_celery
from shared.redis_conn import tls_options, without_tls_options
from shared.settings import Settings
from shared.settings import mask_url as masked


def settings(url: str) -> Settings:
    return Settings(url, "env", Path("/nonexistent"))


@pytest.mark.parametrize("query,reqs", [
    ("", ssl.CERT_REQUIRED), ("ssl_cert_reqs=required", ssl.CERT_REQUIRED),
    ("ssl_cert_reqs=CERT_REQUIRED", ssl.CERT_REQUIRED), ("ssl_cert_reqs=optional", ssl.CERT_OPTIONAL),
    ("ssl_cert_reqs=none", ssl.CERT_NONE),
])
def test_certificate_checks_are_on_unless_the_url_turns_them_off(query, reqs) -> None:
    """Given a rediss:// URL, then Celery gets broker_use_ssl with the URL's ssl_cert_reqs, `required` when
    it says nothing (Celery alone would turn checks off), and a broker URL without the ssl_* query."""
    url = f"rediss://:pw@redis.example:6380/1?{query}"
    conf = celery_config(settings(url))
    assert conf["broker_use_ssl"] == tls_options(url) and conf["broker_use_ssl"]["ssl_cert_reqs"] == reqs
    assert conf["broker_url"] == without_tls_options(url) and "ssl_" not in conf["broker_url"]
    with make_celery(settings(url)).connection_for_write() as conn:  # what kombu will hand redis-py
        assert conn.ssl["ssl_cert_reqs"] == reqs and conn.transport_cls == "rediss"


def test_tls_options_from_the_url() -> None:
    url = ("rediss://h:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
           "&ssl_check_hostname=false&socket_timeout=5")
    assert tls_options(url) == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem",
                                "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem", "ssl_check_hostname": False}
    assert without_tls_options(url) == "rediss://h:6380/0?socket_timeout=5"
    plain = "redis://:pw@h:6379/0"
    assert tls_options(plain) is None and without_tls_options(plain) == plain
    assert celery_config(settings(plain))["broker_use_ssl"] is None


@pytest.mark.parametrize("url,error", [
    ("rediss://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'"),
    ("rediss://h/0?ssl_check_hostname=perhaps", "ssl_check_hostname='perhaps'"),
    ("rediss://h/0?ssl_ca_cert=/ca.pem", "unknown TLS option ssl_ca_cert"),
    ("redis://h/0?ssl_ca_certs=/ca.pem", "need a rediss:// URL"),
])
def test_bad_tls_options_are_refused(url, error) -> None:
    with pytest.raises(ValueError, match=error.replace("?", r"\?")):
        tls_options(url)


def test_masked_hides_the_password_and_secret_query_values() -> None:
    assert masked("rediss://u:pw@h:6380/0?ssl_ca_certs=/ca.pem") == "rediss://u:***@h:6380/0?ssl_ca_certs=/ca.pem"
    assert masked("redis://h/0?password=pw&db=1") == "redis://h/0?password=***&db=1"
    assert masked("redis://h:6379/0") == "redis://h:6379/0"
