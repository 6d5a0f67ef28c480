"""The one Celery app factory: every process (producer, worker, Flower) configures Celery here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared import defaults, sentinel
from shared.protocol import Queue
from shared.redis_conn import tls_options, without_tls_options
from shared.settings import Settings

if TYPE_CHECKING:
    from celery import Celery


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        "socket_connect_timeout": defaults.CONNECT_TIMEOUT_S,
        "socket_timeout": defaults.SOCKET_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": 25,
        # Consume a worker's queues strictly in the order given (high, normal, low), never round robin.
        "queue_order_strategy": "priority",
    }
    broker_url = without_tls_options(settings.broker_url)
    if sentinel.is_sentinel(settings.broker_url):
        # kombu's Sentinel channel asks redis-py's Sentinel for the primary on each new connection (Flower's
        # broker view reads the same options); the URL it gets names every Sentinel with Redis's credentials.
        url = sentinel.parse(settings.broker_url)
        broker_url = url.kombu_url()
        transport.update(master_name=url.master_name,
                         sentinel_kwargs=url.sentinel_kwargs(tls_options(settings.broker_url)))
    return {
        # A rediss:// URL's TLS options are read once (shared.redis_conn) and given as broker_use_ssl, which
        # Flower's broker view needs too; left in the URL, kombu would read them its own way, and without
        # them it would turn certificate checks off. None for redis:// and sentinel://.
        "broker_url": broker_url,
        "broker_use_ssl": tls_options(settings.broker_url),
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        # A worker waits out a broker that is down or not serving (shared/broker_errors.py) for as long as it
        # takes, never exiting after Celery's default 100 tries; its jobs are kept meanwhile.
        "broker_connection_max_retries": None,
        # The user-facing state lives in the job store; Flower gets results from task events.
        "task_ignore_result": True,
        "result_backend": None,
        # JSON only: a pickle on the wire is refused, never loaded.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A job is acknowledged when it ends, and goes back to the queue if its worker dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Events so Flower sees workers, queued (sent) and running tasks.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": Queue.CPU.value,
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


def make_celery(settings: Settings, main: str = "tensorq") -> Celery:
    from celery import Celery

    from shared import transport

    transport.install()  # garbage in a queue is dropped, never fatal; one Redis client per pool
    app = Celery(main)
    app.conf.update(celery_config(settings))
    return app
