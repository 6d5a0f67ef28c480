"""Opening Redis the one way every tensorq process does, with timeouts that fail fast."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared import defaults
from shared.errors import BrokerUnreachable
from shared.settings import Settings

if TYPE_CHECKING:
    import redis


def connect(settings: Settings, check: bool = True) -> redis.Redis:
    """A client for the settings' broker; with `check`, it has answered a PING or BrokerUnreachable is raised."""
    import redis

    try:
        client = redis.Redis.from_url(
            settings.broker_url,
            socket_connect_timeout=defaults.CONNECT_TIMEOUT_S,
            socket_timeout=defaults.SOCKET_TIMEOUT_S,
            health_check_interval=30,
        )
    except ValueError as e:
        raise BrokerUnreachable(f"bad broker URL {settings.masked_broker_url}: {e}") from e
    if check:
        ping(client, settings)
    return client


def ping(client: redis.Redis, settings: Settings) -> None:
    import redis

    try:
        client.ping()
    except redis.AuthenticationError as e:
        raise BrokerUnreachable(f"broker at {settings.masked_broker_url} refused the password: {e}") from e
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        raise BrokerUnreachable(unreachable_message(settings)) from e
    except redis.ResponseError as e:
        raise BrokerUnreachable(f"broker at {settings.masked_broker_url} answered with an error: {e}") from e


def unreachable_message(settings: Settings) -> str:
    hint = {
        "default": " (no `tensorq up` running; start one with `tensorq up --detach` or pass --broker)",
        "stack": " (recorded by `tensorq up`; is it still running? try `tensorq up --detach`)",
    }.get(settings.broker_source, "")
    return f"broker unreachable at {settings.masked_broker_url}{hint}"
