"""Does each service ACCI needs answer? Used by ``acci check-services``, ``make`` and the
readiness checks (workers/health.py): each answer says how long it took."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pika
import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from acci.workers.settings import Settings

_START_HINT = "docker compose up -d postgres redis rabbitmq"
# How PostgreSQL's own refusals start (a password, a role, pg_hba): it answered.
_REFUSED_LOGIN = "FATAL:"
DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class ServiceCheck:
    """One check's answer: ok, or what went wrong (and how to start the service); and how long
    it took to get it."""

    name: str
    ok: bool
    detail: str
    latency_ms: float = 0.0
    # The service answered but refused the login, or the vhost or database: not a service to
    # start, but credentials (or a name) to put right in its URL.
    refused: bool = False


def timed(check: Callable[[], ServiceCheck]) -> ServiceCheck:
    """``check()``'s answer with the time it took."""
    started = time.perf_counter()
    result = check()
    return replace(result, latency_ms=round((time.perf_counter() - started) * 1000, 1))


def postgres(settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> ServiceCheck:
    """The PostgreSQL server answers (on its ``postgres`` database: the ACCI database may not
    exist yet, it is created on use)."""
    params = conninfo_to_dict(settings.database_url.get_secret_value())
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    params["dbname"] = "postgres"
    try:
        with psycopg.connect(
            make_conninfo("", **params), connect_timeout=max(1, round(timeout))
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        refused = isinstance(e, psycopg.OperationalError) and _REFUSED_LOGIN in str(e)
        return ServiceCheck("PostgreSQL", False, f"{where}: {str(e).strip()}", refused=refused)
    return ServiceCheck("PostgreSQL", True, where)


def redis_check(settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> ServiceCheck:
    """Redis answers a PING."""
    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    where = f"{client.connection_pool.connection_kwargs.get('host')}:"
    where += str(client.connection_pool.connection_kwargs.get("port"))
    try:
        client.ping()
    except redis.RedisError as e:
        refused = isinstance(e, redis.AuthenticationError | redis.exceptions.ResponseError)
        return ServiceCheck("Redis", False, f"{where}: {e}", refused=refused)
    finally:
        client.close()
    return ServiceCheck("Redis", True, where)


def rabbitmq(settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> ServiceCheck:
    """RabbitMQ accepts a connection."""
    params = pika.URLParameters(settings.rabbitmq_url.get_secret_value())
    params.socket_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.stack_timeout = timeout
    params.connection_attempts = 1
    where = f"{params.host}:{params.port}"
    try:
        pika.BlockingConnection(params).close()
    except Exception as e:  # pika raises a zoo of types, most meaning "not answering"
        refused = isinstance(
            e,
            pika.exceptions.ProbableAuthenticationError | pika.exceptions.ProbableAccessDeniedError,
        ) or "ACCESS_REFUSED" in str(e)
        detail = f"{where}: {type(e).__name__} {e}".strip()
        return ServiceCheck("RabbitMQ", False, detail, refused=refused)
    return ServiceCheck("RabbitMQ", True, where)


def check_services(settings: Settings) -> list[ServiceCheck]:
    """PostgreSQL, Redis and RabbitMQ, each asked once."""
    return [
        timed(lambda: postgres(settings)),
        timed(lambda: redis_check(settings)),
        timed(lambda: rabbitmq(settings)),
    ]


def start_hint() -> str:
    """How a user without the services gets them."""
    return _START_HINT
