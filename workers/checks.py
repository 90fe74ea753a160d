"""Does each service ACCI needs answer? Used by ``acci check-services`` and ``make``."""

from __future__ import annotations

from dataclasses import dataclass

import pika
import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from acci.workers.settings import Settings

_START_HINT = "docker compose up -d postgres redis rabbitmq"


@dataclass(frozen=True, slots=True)
class ServiceCheck:
    """One service's answer: ok, or what went wrong and how to start it."""

    name: str
    ok: bool
    detail: str


def _postgres(settings: Settings) -> ServiceCheck:
    params = conninfo_to_dict(settings.database_url.get_secret_value())
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    params["dbname"] = "postgres"  # the ACCI database may not exist yet: it is created on use
    try:
        with psycopg.connect(make_conninfo("", **params), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return ServiceCheck("PostgreSQL", False, f"{where}: {str(e).strip()}")
    return ServiceCheck("PostgreSQL", True, where)


def _redis(settings: Settings) -> ServiceCheck:
    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_connect_timeout=3, socket_timeout=3
    )
    where = f"{client.connection_pool.connection_kwargs.get('host')}:"
    where += str(client.connection_pool.connection_kwargs.get("port"))
    try:
        client.ping()
    except redis.RedisError as e:
        return ServiceCheck("Redis", False, f"{where}: {e}")
    finally:
        client.close()
    return ServiceCheck("Redis", True, where)


def _rabbitmq(settings: Settings) -> ServiceCheck:
    params = pika.URLParameters(settings.rabbitmq_url.get_secret_value())
    params.socket_timeout = 3
    params.blocked_connection_timeout = 3
    params.connection_attempts = 1
    where = f"{params.host}:{params.port}"
    try:
        pika.BlockingConnection(params).close()
    except Exception as e:  # pika raises a zoo of types, all meaning "not answering"
        return ServiceCheck("RabbitMQ", False, f"{where}: {type(e).__name__} {e}".strip())
    return ServiceCheck("RabbitMQ", True, where)


def check_services(settings: Settings) -> list[ServiceCheck]:
    """PostgreSQL, Redis and RabbitMQ, each asked once."""
    return [_postgres(settings), _redis(settings), _rabbitmq(settings)]


def start_hint() -> str:
    """How a user without the services gets them."""
    return _START_HINT
