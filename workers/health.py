"""Is ACCI ready to work? Every dependency checked at once, each within a time limit, each
answer with its latency and reason: for ``acci health`` and the worker's ``/readyz``.

Ready means: PostgreSQL answers on the ACCI database, the event store is writable (a primary,
not read-only, and the connecting role may insert events: privileges are checked, no row is
written), Redis and RabbitMQ answer, Temporal describes the namespace, and every installed
projection is running (not paused) within its lag bound (ACCI_HEALTH_MAX_LAG_EVENTS and
ACCI_HEALTH_MAX_LAG_SECONDS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any, Final

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from acci.eventstore.db import conninfo, create_pool
from acci.eventstore.records import START
from acci.readmodels.checkpoints import Checkpoint, CheckpointStore
from acci.readmodels.installed import projection_names
from acci.readmodels.lag import measure_lag
from acci.workers.checks import ServiceCheck, rabbitmq, redis_check, timed
from acci.workers.devserver import history_file_bytes
from acci.workers.logs import redact
from acci.workers.settings import Settings
from acci.workers.temporal_client import connect
from acci.workers.urls import where, without_password

_WRITABLE: Final = sql.SQL(
    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on',"
    " has_table_privilege('event_store.events', 'INSERT')"
)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check's answer; ready when all are ok."""

    checks: list[ServiceCheck]
    # The dev server's history file, when `acci dev` keeps one in ACCI_DATA_DIR.
    dev_history_bytes: int | None = None
    failing: list[str] = field(init=False)

    def __post_init__(self) -> None:
        # A service's error may quote its URL (libpq quotes a malformed one whole): every
        # detail is shown with its passwords taken out, in this one place.
        shown = [replace(c, detail=redact(c.detail)) for c in self.checks]
        object.__setattr__(self, "checks", shown)
        object.__setattr__(self, "failing", [c.name for c in shown if not c.ok])

    @property
    def ready(self) -> bool:
        return not self.failing

    def as_json(self) -> dict[str, Any]:
        """The report as ``acci health --json`` and ``/readyz`` show it."""
        return {
            "status": "ready" if self.ready else "not ready",
            "failing": self.failing,
            # name, ok, detail, latency_ms (a refusal's flag is check-services' own).
            "checks": [{k: v for k, v in asdict(c).items() if k != "refused"} for c in self.checks],
            "dev_server_history_bytes": self.dev_history_bytes,
        }


async def _limited(name: str, limit: float, check: Awaitable[ServiceCheck]) -> ServiceCheck:
    """``check``'s answer with its latency; a failure if it takes longer than ``limit``."""
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(check, limit)
    except TimeoutError:
        result = ServiceCheck(name, False, f"no answer within {limit:.1f}s")
    except Exception as e:  # a check that breaks is a failed check, not a broken report
        result = ServiceCheck(name, False, f"{type(e).__name__}: {e}")
    return ServiceCheck(result.name, result.ok, result.detail, _ms(started))


def _in_thread(check: Callable[[], ServiceCheck]) -> Awaitable[ServiceCheck]:
    return asyncio.to_thread(timed, check)


async def _temporal(settings: Settings, client: Client | None, limit: float) -> ServiceCheck:
    target = f"{settings.temporal_address} namespace {settings.temporal_namespace}"
    try:
        client = client or await connect(settings)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.temporal_namespace),
            timeout=timedelta(seconds=limit),
        )
    except Exception as e:  # RPCError, or RuntimeError from connect: both "not answering"
        return ServiceCheck("Temporal", False, f"{target}: {e}")
    return ServiceCheck("Temporal", True, target)


async def _writable(conn: psycopg.AsyncConnection[Any]) -> ServiceCheck:
    try:
        cur = await conn.execute(_WRITABLE)
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return ServiceCheck("event store", False, "no event store here: run `acci db migrate`")
    row = await cur.fetchone()
    assert row is not None
    in_recovery, read_only, may_insert = row
    if in_recovery:
        return ServiceCheck("event store", False, "the database is a standby (in recovery)")
    if read_only:
        return ServiceCheck("event store", False, "transactions are read-only")
    if not may_insert:
        return ServiceCheck("event store", False, "the role may not insert into the events")
    return ServiceCheck("event store", True, "writable (primary, INSERT granted)")


async def _projection(
    settings: Settings, pool: AsyncConnectionPool, name: str, checkpoint: Checkpoint | None
) -> ServiceCheck:
    label = f"projection {name}"
    position = checkpoint.position if checkpoint else START
    lag = await measure_lag(pool, position)
    standing = f"at {position}, lag {lag.events} events / {lag.seconds:.1f}s"
    if checkpoint is not None and checkpoint.paused:
        reason = f": {checkpoint.last_error}" if checkpoint.last_error else ""
        return ServiceCheck(label, False, f"paused {standing}{reason}")
    if lag.events > settings.health_max_lag_events:
        limit = f"over {settings.health_max_lag_events} events"
        return ServiceCheck(label, False, f"behind {standing} ({limit})")
    if lag.seconds > settings.health_max_lag_seconds:
        limit = f"over {settings.health_max_lag_seconds:g}s"
        return ServiceCheck(label, False, f"behind {standing} ({limit})")
    return ServiceCheck(label, True, f"running {standing}")


async def _database(settings: Settings, limit: float) -> list[ServiceCheck]:
    """PostgreSQL on the ACCI database, the event store, and each projection."""
    url = settings.database_url.get_secret_value()
    target = where(without_password(url)) if "://" in url else without_password(url)
    started = time.perf_counter()
    try:
        # One connection of its own, not the pool's: its error says why, and a pool busy with
        # work does not make the database look down.
        conn = await psycopg.AsyncConnection.connect(
            conninfo(
                url,
                idle_in_transaction_timeout_ms=settings.db_idle_in_transaction_timeout_ms,
                statement_timeout_ms=max(100, int(limit * 1000)),
            ),
            autocommit=True,
            connect_timeout=max(1, round(limit)),
        )
    except psycopg.Error as e:
        return [ServiceCheck("PostgreSQL", False, f"{target}: {str(e).strip()}", _ms(started))]
    async with conn:
        checks = [ServiceCheck("PostgreSQL", True, target, _ms(started))]
        checks.append(await _limited("event store", limit, _writable(conn)))
    if not checks[-1].ok:
        return checks  # no projection can be ready without it
    pool = create_pool(url, min_size=1, max_size=1, statement_timeout_ms=int(limit * 1000))
    async with pool:
        try:
            checkpoints = {c.projection: c for c in await CheckpointStore(pool).all()}
        except Exception as e:  # the schema is missing (`acci db migrate` not run), say
            return [*checks, ServiceCheck("projections", False, f"{type(e).__name__}: {e}")]
        for name in sorted(projection_names()):
            check = _projection(settings, pool, name, checkpoints.get(name))
            checks.append(await _limited(f"projection {name}", limit, check))
    return checks


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


async def readiness(settings: Settings, *, client: Client | None = None) -> HealthReport:
    """Check everything at once (each within ACCI_HEALTH_TIMEOUT_MS); ``client``: the
    Temporal client to ask (else one is connected)."""
    timeout = settings.health_timeout_ms / 1000
    database, redis, rabbit, temporal = await asyncio.gather(
        _database_limited(settings, timeout),
        _limited("Redis", timeout, _in_thread(lambda: redis_check(settings, timeout))),
        _limited("RabbitMQ", timeout, _in_thread(lambda: rabbitmq(settings, timeout))),
        _limited("Temporal", timeout, _temporal(settings, client, timeout)),
    )
    checks = [*database, redis, rabbit, temporal]
    return HealthReport(checks, dev_history_bytes=history_file_bytes(settings))


async def _database_limited(settings: Settings, limit: float) -> list[ServiceCheck]:
    # The database checks run one after another on one small pool: their total is bounded too,
    # so that a database that stops answering half-way cannot hold the report.
    budget = limit * 3
    try:
        return await asyncio.wait_for(_database(settings, limit), budget)
    except TimeoutError:
        return [ServiceCheck("PostgreSQL", False, f"no answer within {budget:.1f}s")]
    except Exception as e:  # a check that breaks is a failed check, not a broken report
        return [ServiceCheck("PostgreSQL", False, f"{type(e).__name__}: {e}")]
