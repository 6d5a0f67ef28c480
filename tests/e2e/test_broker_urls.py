"""Every broker problem is one line and exit 3, within seconds, never "internal error", and never shows a
password: malformed URLs, URLs Redis rejects, and servers that are not (plain) Redis. Real servers: the CLI
(in-process) against real redis-servers, an HTTP server that answers at once, a server that accepts and says
nothing. Also: a bad TENSORQ_MAX_* value is refused (exit 2), like TENSORQ_HISTORY_TTL: that CLI is a process
of its own, as the limits are read from the environment at import."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.cli import Cli, assert_one_line_error
from tests.support.processes import Tq, free_port, stop_process, tq_env
from tests.support.tls import start_secure_redis

FEW_SECONDS = 8.0  # the CLI's own limit is 3 s per reply (CONNECT_TIMEOUT_S); start-up (of a process) is the rest


def run_timed(url: str, tmp_path, *command: str) -> tuple[object, float]:
    started = time.monotonic()
    done = Cli(tq_env(url, tmp_path))(*(command or ("list",)), timeout=60)
    return done, time.monotonic() - started


@pytest.fixture(scope="module")
def fake_servers() -> Iterator[dict[str, int]]:
    """Two loopback servers that are not Redis: `http` replies an HTTP error at once; `silent` accepts and
    never says a word."""
    listeners, held = [], []

    def serve(sock: socket.socket, reply: bytes | None) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if reply is None:
                held.append(conn)  # kept open, unanswered
                continue
            try:
                conn.recv(1024)
                conn.sendall(reply)
            finally:
                conn.close()

    ports = {}
    for name, reply in (("http", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                        ("silent", None)):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        listeners.append(sock)
        ports[name] = sock.getsockname()[1]
        threading.Thread(target=serve, args=(sock, reply), daemon=True).start()
    yield ports
    for sock in listeners + held:
        sock.close()


@pytest.mark.parametrize("server,fragment", [
    ("http", "does not speak the Redis protocol"),
    ("silent", "did not answer within 3 s"),
])
def test_a_server_that_is_not_redis_is_one_line_exit_3_in_seconds(fake_servers, tmp_path, server, fragment) -> None:
    done, took = run_timed(f"redis://:hunter22@127.0.0.1:{fake_servers[server]}/0", tmp_path)
    assert_one_line_error(done, 3, fragment)
    assert "internal error" not in done.stderr and "hunter22" not in done.stderr
    assert took < FEW_SECONDS, f"took {took:.1f} s"


def test_rediss_to_a_plain_redis_port_is_one_line_exit_3(redis_server, tmp_path) -> None:
    done, took = run_timed(redis_server.url.replace("redis://", "rediss://:hunter22@"), tmp_path)
    assert_one_line_error(done, 3, "TLS handshake failed")
    assert "hunter22" not in done.stderr and took < FEW_SECONDS, (done.stderr, took)


def test_plain_redis_to_a_tls_port_is_one_line_exit_3_in_seconds(tls, tmp_path) -> None:
    done, took = run_timed(f"redis://:hunter22@127.0.0.1:{tls.port}/0", tmp_path)
    assert_one_line_error(done, 3, "broker unreachable at redis://:***@")
    assert "internal error" not in done.stderr and "hunter22" not in done.stderr
    assert took < FEW_SECONDS, f"took {took:.1f} s"


@pytest.mark.parametrize("url,fragment", [
    ("redis://:s3cr3t/x@127.0.0.1:{port}/0", "the password holds /, which must be %-encoded"),
    ("redis://:s3cr#3t@127.0.0.1:{port}/0", "the password holds #"),
    ("redis://:s3cr3t@127.0.0.1:99999/0", "redis://:***@127.0.0.1:99999/0"),
    ("http://:s3cr3t@127.0.0.1:{port}", "bad broker URL http://:***@127.0.0.1:"),
    ("localhost:{port}", "bad broker URL localhost:"),
], ids=["slash", "hash", "bad-port", "http-scheme", "no-scheme"])
def test_a_malformed_broker_url_is_exit_3_and_never_shows_the_password(redis_server, tmp_path, url, fragment) -> None:
    done, _ = run_timed(url.format(port=redis_server.port), tmp_path)
    assert_one_line_error(done, 3, fragment)
    assert "s3cr" not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory) -> Iterator[int]:
    port = free_port()
    server = start_secure_redis(tmp_path_factory.mktemp("pw-redis"), f"redis://:right-pw@127.0.0.1:{port}/0",
                                "--port", str(port), "--requirepass", "right-pw")
    yield port
    stop_process(server.proc)


@pytest.mark.parametrize("url", [
    "redis://bob:s3cr3t-pw@127.0.0.1:{port}/0",  # a username Redis does not know
    "redis://127.0.0.1:{port}/0?password=s3cr3t-pw",  # the password as a query parameter
    "redis://:s3cr3t-pw@127.0.0.1:{port}/0",
], ids=["username", "query", "plain"])
def test_a_url_redis_rejects_never_shows_the_password(password_redis, tmp_path, url) -> None:
    done, took = run_timed(url.format(port=password_redis), tmp_path, "submit", "op", "add", "1", "2")
    assert_one_line_error(done, 3, "refused the password")
    assert "s3cr3t" not in done.stderr and took < FEW_SECONDS, (done.stderr, took)


@pytest.mark.parametrize("name", ["TENSORQ_MAX_TENSOR_ELEMENTS", "TENSORQ_MAX_LAYER_SIZE",
                                  "TENSORQ_MAX_TRAIN_ELEMENTS", "TENSORQ_MAX_ITERATIONS"])
@pytest.mark.parametrize("value", ["abc", "0"])
def test_a_bad_limit_in_the_environment_is_exit_2(redis_server, tmp_path, name, value) -> None:
    before = redis_server.client().zcard("tensorq:jobs")
    done = Tq(tq_env(redis_server.url, tmp_path, **{name: value}))("submit", "op", "add", "1", "2", timeout=60)
    assert_one_line_error(done, 2, f"{name} must be a whole number above 0 (got '{value}')")
    assert redis_server.client().zcard("tensorq:jobs") == before


@pytest.mark.parametrize("value", ["2", "soon"])
def test_a_lease_ttl_too_short_to_renew_is_exit_2(redis_server, tmp_path, value) -> None:
    done = Tq(tq_env(redis_server.url, tmp_path, TENSORQ_LEASE_TTL_S=value))("worker", "--gpus", "none", timeout=60)
    assert_one_line_error(done, 2, f"TENSORQ_LEASE_TTL_S must be a whole number of at least 3 (got '{value}')")
