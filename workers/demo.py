"""The scripted scenario of ``acci demo`` / ``make demo``: commands through Temporal, printed."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import REGISTRY
from temporalio.client import Client

from acci.activities.models import CommandInput
from acci.domain import Tenant
from acci.domain.errors import CommandError
from acci.domain.principals import Principal, parse_principal
from acci.eventstore.records import Position
from acci.readmodels.tenancy.tenant_activity import GetTenantActivity
from acci.readmodels.tenancy.tenants import GetTenantDetails
from acci.readmodels.tenancy.users import ListTenantUsers
from acci.workers.runtime import open_event_store, open_query_bus
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result, start_command
from acci.workers.urls import without_password

ACME: Final = "demo-acme"
GLOBEX: Final = "demo-globex"
# Fixed command ids: running the demo again re-sends the same commands, which shows that a
# re-sent command returns its first result and runs nothing twice (the refused ones are refused
# again: the scenario leaves no state in which one would now pass).
_NAMESPACE: Final = uuid.UUID("0f7d7c36-2a0e-4d7e-8a44-0c1f3d9b6e01")
_PSQL_QUERY: Final = (
    "'SELECT global_position, tenant_id, aggregate_id, event_type FROM event_store.events'"
)


@dataclass(frozen=True, slots=True)
class DevSetup:
    """What ``acci dev`` started, for the scenario to point at."""

    ui_url: str
    # The metrics URL if the endpoint is served, else why it is not.
    metrics: str
    # Where the logs go (ACCI's, the dev server's).
    logs: str


def _say(text: str = "") -> None:
    print(text, flush=True)


class _Scenario:
    def __init__(self, client: Client, task_queue: str, principal: Principal) -> None:
        self._client = client
        self._task_queue = task_queue
        # Who the scenario's commands are sent as: the CLI's principal (ACCI_PRINCIPAL).
        self._principal = principal
        # The furthest position a command of this run stored (or re-sent): what the read
        # models must have passed before the scenario reads them.
        self.position: Position | None = None

    async def send(self, key: str, tenant: str, command_type: str, /, **payload: Any) -> bool:
        command = CommandInput(
            command_id=uuid.uuid5(_NAMESPACE, key),
            tenant_id=tenant,
            command_type=command_type,
            payload=payload,
            # Context only: the actor and the other envelope fields are the system's to record.
            metadata={"client": "acci-demo"},
            principal=self._principal,
        )
        sent = await start_command(self._client, command, task_queue=self._task_queue)
        label = f"{tenant:<12} {command_type:<16}"
        try:
            result = await command_result(sent.handle)
        except CommandError as e:
            _say(f"  {label} REJECTED ({e.code}): {e}")
            return False
        again = "  [re-sent: first result]" if sent.resent or result.duplicate else ""
        if result.position is not None:
            position = Position.parse(result.position)
            self.position = max(position, self.position or position)
        if not result.event_ids:
            _say(f"  {label} no change{again}")
        else:
            where = f"v{result.stream_version} at {result.position}"
            _say(f"  {label} {result.aggregate_type} {result.aggregate_id} -> {where}{again}")
        return True


async def run_demo(settings: Settings, client: Client, *, dev: DevSetup | None = None) -> None:
    """Run the scenario against a running worker; safe to run again."""
    s = _Scenario(client, settings.task_queue, parse_principal(settings.principal))
    _say("\n1. Two tenants and their users, each command a workflow run (cmd-<command id>)")
    await s.send("acme", ACME, "CreateTenant", name="Acme Corporation")
    await s.send("globex", GLOBEX, "CreateTenant", name="Globex", settings={"max_users": 10})
    await s.send(
        "alice",
        ACME,
        "RegisterUser",
        user_id="alice",
        email="alice@acme.example",
        display_name="Alice",
        roles=["owner"],
    )
    await s.send(
        "bob", ACME, "RegisterUser", user_id="bob", email="bob@acme.example", display_name="Bob"
    )
    await s.send("bob-admin", ACME, "AssignRole", user_id="bob", role="admin")
    await s.send(
        "carol",
        GLOBEX,
        "RegisterUser",
        user_id="carol",
        email="carol@globex.example",
        display_name="Carol",
    )

    _say("\n2. Rejected commands: a typed failure, nothing appended, nothing published")
    await s.send(
        "eve", ACME, "RegisterUser", user_id="eve", email="not-an-email", display_name="Eve"
    )
    await s.send("globex-suspend", GLOBEX, "SuspendTenant", reason="unpaid invoice")
    await s.send(
        "dave",
        GLOBEX,
        "RegisterUser",
        user_id="dave",
        email="dave@globex.example",
        display_name="Dave",
    )

    _say("\n3. A concurrent conflict: two reactivations of one tenant at once")
    _say("   (the loser reloads, decides again on the new state, and is refused)")
    await s.send("acme-suspend", ACME, "SuspendTenant", reason="audit")
    # Refused on the state the winner leaves, and on every later run's: a refused command is
    # decided again when it is sent again (only what stored events is recorded), so a second
    # run of the demo refuses it again and stores nothing new.
    await asyncio.gather(
        s.send("acme-reactivate-1", ACME, "ReactivateTenant"),
        s.send("acme-reactivate-2", ACME, "ReactivateTenant"),
    )

    _say("\n4. The same command id again: the first run's result, nothing runs twice")
    await s.send("acme", ACME, "CreateTenant", name="Acme Corporation")

    _say("\n5. The audit trail of demo-acme, and its state back then")
    async with open_event_store(settings, migrate_schema=False) as rt:
        for e in await rt.store.read_stream(ACME, ACME, aggregate_type="Tenant"):
            _say(f"  v{e.sequence_number} {e.created_at:%H:%M:%S} {e.event_type:<18} {e.data}")
        first = await rt.repository.load(Tenant, ACME, ACME, version=1)
        now = await rt.repository.load(Tenant, ACME, ACME)
        _say(
            f"  as of v1: {first.state.status}, {first.state.name!r};"
            f" now (v{now.version}): {now.state.status}"
        )

    _say("\n6. The read models, read-your-writes: asked at the last command's position")
    await _read_models(settings, s.position)

    _say("\nLook around:")
    if dev is not None:
        _say(
            f"  Temporal Web UI     {dev.ui_url}/namespaces/{settings.temporal_namespace}/workflows"
        )
    _say(
        f"  Temporal CLI        temporal workflow list --address {settings.temporal_address}"
        f" --query \"TenantId='{ACME}'\""
    )
    _say(f"  the audit trail     acci events {ACME} --tenant {ACME}")
    _say(f"  a user's state      acci aggregate alice --tenant {ACME}")
    _say(f"  the read models     acci tenant list; acci user list --tenant {ACME}")
    _say("  the projections     acci projections status; acci cache stats")
    if dev is not None:
        _say(f"  metrics             {dev.metrics}")
    database = without_password(settings.database_url.get_secret_value())
    _say(f"  the event store     psql '{database}' -c {_PSQL_QUERY}")
    _say("  RabbitMQ            exchange acci.events, routing keys <tenant>.<aggregate>.<event>")
    if dev is not None:
        _say(f"\nlogs: {dev.logs}")


async def _read_models(settings: Settings, position: Position | None) -> None:
    tenant = GetTenantDetails(tenant_id=ACME, consistent_with=position)
    async with open_query_bus(settings, pool_max_size=2) as bus:
        started = time.perf_counter()
        acme = await bus.ask(tenant)
        waited = time.perf_counter() - started
        _say(
            f"  {acme.tenant_id:<12} {acme.name!r}, {acme.status}, {acme.user_count} users"
            f"  (answered once the read model had passed {position}: {waited * 1000:.0f} ms)"
        )
        users = await bus.ask(ListTenantUsers(tenant_id=ACME, consistent_with=position))
        for user in users.items:
            _say(f"  {'':<12} {user.user_id:<6} {user.email:<20} {', '.join(user.roles) or '-'}")
        activity = await bus.ask(GetTenantActivity(tenant_id=ACME, consistent_with=position))
        counts = ", ".join(f"{a.event_type} {a.event_count}" for a in activity.event_types)
        _say(f"  {'':<12} activity: {counts}")
        # The same question without a position, twice: the second is answered from Redis.
        for attempt in ("asked without a position", "and again"):
            hits = _cache_hits("GetTenantDetails")
            started = time.perf_counter()
            await bus.ask(tenant.model_copy(update={"consistent_with": None}))
            took = (time.perf_counter() - started) * 1000
            source = "the Redis cache" if _cache_hits("GetTenantDetails") > hits else "PostgreSQL"
            _say(f"  {attempt}: {took:.1f} ms, from {source}")
    _say("  (each projection commit invalidates the cached answers about the tenants it changed)")


def _cache_hits(query: str) -> float:
    return REGISTRY.get_sample_value("acci_cache_hits_total", {"query": query}) or 0.0
