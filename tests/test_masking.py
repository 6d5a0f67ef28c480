"""No message shows a broker password (shared/settings.py): URLs are masked as text, before any parsing, so a
malformed one is masked too; the "not now" table (shared/broker_errors.py) tells waiting from failing."""

from __future__ import annotations

import pytest
import redis

from shared import broker_errors, settings

MASKED = [
    # (url, masked, the secret that must not show)
    ("redis://:s3cr3t/x@127.0.0.1:6391/0", "redis://:***@127.0.0.1:6391/0", "s3cr3t"),  # unencoded /
    ("redis://:pa#ss@h:6379/0", "redis://:***@h:6379/0", "pa#ss"),  # unencoded #: no fragment
    ("redis://:pa?ss@h:6379/0", "redis://:***@h:6379/0", "pa?ss"),  # unencoded ?: no query
    ("redis://:p@ss@h/0", "redis://:***@h/0", "p@ss"),  # unencoded @: the last one ends the password
    ("redis://bob:secret@h:6379/0", "redis://bob:***@h:6379/0", "secret"),  # a username stays, the password goes
    ("redis://h/0?password=hunter2&db=1", "redis://h/0?password=***&db=1", "hunter2"),
    ("redis://h/0?PASSWORD=hunter2", "redis://h/0?PASSWORD=***", "hunter2"),
    ("redis://h/0?password=a&bc&db=1", "redis://h/0?password=***&db=1", "a&bc"),  # an unencoded & in it
    ("rediss://u:pw9@h:6380/0?ssl_ca_certs=/ca.pem", "rediss://u:***@h:6380/0?ssl_ca_certs=/ca.pem", "pw9"),
    ("localhost:6380", "localhost:6380", None),
    ("redis://bob@h:6379/0", "redis://bob@h:6379/0", None),
]


@pytest.mark.parametrize("url,masked,secret", MASKED)
def test_mask_url_masks_before_parsing(url: str, masked: str, secret: str | None) -> None:
    assert settings.mask_url(url) == masked
    if secret:
        assert secret not in settings.mask_url(url)


def test_scrub_masks_the_pieces_a_parser_quotes() -> None:
    """redis-py's own error for the malformed URL quotes the password's first piece."""
    said = "Port could not be cast to integer value as 's3cr3t'"
    scrubbed = settings.scrub(said, "redis://:s3cr3t/x@127.0.0.1:6391/0")
    assert scrubbed == "Port could not be cast to integer value as '***'"
    assert settings.scrub("as 'Tq-s3cret/pw'", "redis://:Tq-s3cret%2Fpw@h/0") == "as '***'"  # decoded too


def test_password_problem_names_the_characters_to_encode() -> None:
    assert "/ as %2F" in settings.password_problem("redis://:s3cr3t/x@h:6391/0")
    assert settings.password_problem("redis://:s3cr3t%2Fx@h:6391/0") is None
    assert settings.password_problem("redis://h:6379/0") is None


@pytest.mark.parametrize("error,reason", [
    (redis.exceptions.OutOfMemoryError("command not allowed", status_code="OOM"), "out of memory"),
    (redis.ResponseError("Error running script (call to f_0e): @user_script:3: @user_script: 3: -OOM command "
                         "not allowed when used memory > 'maxmemory'.", status_code="ERR"), "out of memory"),
    (redis.ResponseError("BUSY Redis is busy running a script."), "busy running a script"),
    (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), "loading its data set"),
    (redis.exceptions.ReadOnlyError("You can't write against a read only replica.", status_code="READONLY"),
     "read-only (a replica: is a failover under way?)"),
    (redis.exceptions.MasterDownError("Link with MASTER is down", status_code="MASTERDOWN"), "its master is down"),
    (redis.exceptions.TryAgainError("Multiple keys request during rehashing", status_code="TRYAGAIN"),
     "asks to try again (a cluster resharding)"),
    (redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."), "the connection failed"),
    (ConnectionResetError(104, "Connection reset by peer"), "the connection failed"),
    (redis.TimeoutError("Timeout reading from socket"), "timed out"),
    # not "not now": waiting would not help
    (redis.AuthenticationError("invalid username-password pair"), None),
    (redis.ConnectionError("Error 1 connecting: [SSL: WRONG_VERSION_NUMBER] wrong version number"), None),
    (redis.exceptions.InvalidResponse("Protocol Error: H"), None),
    (redis.ResponseError("ERR unknown command 'FOO'"), None),
    (TimeoutError("job 0123 is still running after 1 s"), None),  # the client's own, not a socket's
])
def test_not_now_table(error: BaseException, reason: str | None) -> None:
    assert broker_errors.not_now(error) == reason


def test_not_now_follows_the_cause_chain() -> None:
    try:
        try:
            raise redis.exceptions.OutOfMemoryError("command not allowed", status_code="OOM")
        except redis.RedisError as e:
            raise RuntimeError("publish failed") from e
    except RuntimeError as wrapped:
        assert broker_errors.not_now(wrapped) == "out of memory"


def test_backoff_doubles_up_to_its_cap() -> None:
    waits = [broker_errors.backoff_s(n) for n in range(12)]
    assert waits[0] < waits[1] < waits[2] and max(waits) == waits[-1] <= 5.0
