"""shared/settings.py: the broker URL comes from flag > env > the `tensorq up` record > default."""

from __future__ import annotations

import json

import pytest

from shared import defaults, settings

ENV_URL = "redis://env-host:6379/1"
STACK_URL = "redis://stack-host:6380/0"
FLAG_URL = "redis://flag-host:6379/2"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private TENSORQ_HOME and no TENSORQ_* variables from the real environment."""
    for name in ("TENSORQ_BROKER_URL", "TENSORQ_KEY_PREFIX", "TENSORQ_VISIBILITY_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TENSORQ_HOME", str(tmp_path))
    return tmp_path


def write_stack(home, record) -> None:
    (home / settings.STACK_RECORD_NAME).write_text(json.dumps(record))


# --- resolve ---------------------------------------------------------------------------------------


def test_default(home):
    s = settings.resolve()
    assert (s.broker_url, s.broker_source) == (defaults.DEFAULT_BROKER_URL, "default")
    assert s.broker_url == "redis://127.0.0.1:6379/0"
    assert s.home == home
    assert s.stack_record == home / "stack.json"
    assert s.artifact_dir == home / "artifacts"
    assert (s.key_prefix, s.visibility_timeout_s) == (defaults.DEFAULT_KEY_PREFIX, defaults.VISIBILITY_TIMEOUT_S)


def test_stack_record_beats_default(home):
    write_stack(home, {"broker_url": STACK_URL, "pid": 123})
    s = settings.resolve()
    assert (s.broker_url, s.broker_source) == (STACK_URL, "stack")


def test_env_beats_stack_record(home, monkeypatch):
    write_stack(home, {"broker_url": STACK_URL})
    monkeypatch.setenv("TENSORQ_BROKER_URL", ENV_URL)
    s = settings.resolve()
    assert (s.broker_url, s.broker_source) == (ENV_URL, "env")


def test_flag_beats_everything(home, monkeypatch):
    write_stack(home, {"broker_url": STACK_URL})
    monkeypatch.setenv("TENSORQ_BROKER_URL", ENV_URL)
    s = settings.resolve(FLAG_URL)
    assert (s.broker_url, s.broker_source) == (FLAG_URL, "flag")


def test_empty_flag_and_env_are_not_given(home, monkeypatch):
    write_stack(home, {"broker_url": STACK_URL})
    monkeypatch.setenv("TENSORQ_BROKER_URL", "")
    assert settings.resolve("").broker_source == "stack"


@pytest.mark.parametrize(
    "content",
    ["{not json", "", "[1, 2]", '"redis://x"', '{"pid": 1}', '{"broker_url": ""}', '{"broker_url": null}'],
)
def test_unusable_stack_record_falls_back_to_default(home, content):
    """Given a corrupt or incomplete stack.json, When resolving, Then the default is used, no error."""
    (home / "stack.json").write_text(content)
    s = settings.resolve()
    assert (s.broker_url, s.broker_source) == (defaults.DEFAULT_BROKER_URL, "default")


def test_unreadable_stack_record_falls_back_to_default(home):
    (home / "stack.json").mkdir()
    assert settings.resolve().broker_source == "default"


def test_home_from_env_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TENSORQ_HOME", "~/tq")
    assert settings.home_dir() == tmp_path / "tq"


def test_prefix_and_visibility_from_env(home, monkeypatch):
    monkeypatch.setenv("TENSORQ_KEY_PREFIX", "t2:")
    monkeypatch.setenv("TENSORQ_VISIBILITY_TIMEOUT_S", "60")
    s = settings.resolve()
    assert (s.key_prefix, s.visibility_timeout_s) == ("t2:", 60)


def test_settings_mask_their_url(home):
    assert settings.resolve("redis://:pw@h:6379/0").masked_broker_url == "redis://:***@h:6379/0"


# --- mask_url --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://bob:secret@h:6379/0", "redis://bob:***@h:6379/0"),
        ("rediss://:secret@cache.example.com:6380/2", "rediss://:***@cache.example.com:6380/2"),
        ("redis://:secret@h/0", "redis://:***@h/0"),
        ("redis://bob:@h:6379", "redis://bob:***@h:6379"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://bob@h:6379/0", "redis://bob@h:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:secret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ],
)
def test_mask_url(url, masked):
    assert settings.mask_url(url) == masked
    assert "secret" not in settings.mask_url(url)


# --- where large blobs go (TENSORQ_ARTIFACTS) -------------------------------------------------------

def test_artifacts_default_to_redis_and_take_a_url_and_a_threshold(home, monkeypatch):
    monkeypatch.delenv("TENSORQ_ARTIFACTS", raising=False)
    monkeypatch.delenv("TENSORQ_ARTIFACTS_MIN_BYTES", raising=False)
    s = settings.resolve()
    assert s.artifacts_url is None and s.artifacts_min_bytes == defaults.ARTIFACTS_MIN_BYTES
    monkeypatch.setenv("TENSORQ_ARTIFACTS", "s3://bucket/models/")
    monkeypatch.setenv("TENSORQ_ARTIFACTS_MIN_BYTES", "1048576")
    s = settings.resolve()
    assert (s.artifacts_url, s.artifacts_min_bytes) == ("s3://bucket/models", 1 << 20)


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("TENSORQ_ARTIFACTS", "/mnt/models", "must be a URL such as file:///mnt/models"),
    ("TENSORQ_ARTIFACTS_MIN_BYTES", "32MiB", "must be a whole number of bytes above 0"),
])
def test_a_bad_artifacts_setting_is_one_line(home, monkeypatch, name, value, fragment):
    from shared.errors import BadInput

    monkeypatch.setenv(name, value)
    with pytest.raises(BadInput, match=fragment):
        settings.resolve()
