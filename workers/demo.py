"""The scripted scenario of ``acci demo`` / ``make demo``: commands through Temporal, printed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Final

from temporalio.client import Client

from domain import Tenant
from domain.errors import CommandError
from workers.runtime import open_event_store
from workers.settings import Settings
from workers.temporal_client import command_result, start_command
from workflows.models import CommandInput

ACME: Final = "demo-acme"
GLOBEX: Final = "demo-globex"
# Fixed command ids: running the demo again re-sends the same commands, which shows that a
# re-sent command returns its first result and runs nothing twice.
_NAMESPACE: Final = uuid.UUID("0f7d7c36-2a0e-4d7e-8a44-0c1f3d9b6e01")
_PSQL_HINT: Final = (
    "psql postgresql://postgres@127.0.0.1:5432/acci -c"
    " 'SELECT global_position, tenant_id, aggregate_id, event_type FROM event_store.events'"
)


def _say(text: str = "") -> None:
    print(text, flush=True)


class _Scenario:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def send(self, key: str, tenant: str, command_type: str, /, **payload: Any) -> bool:
        command = CommandInput(
            command_id=uuid.uuid5(_NAMESPACE, key),
            tenant_id=tenant,
            command_type=command_type,
            payload=payload,
            metadata={"actor": "acci-demo"},
        )
        sent = await start_command(self._client, command, task_queue=self._task_queue)
        label = f"{tenant:<12} {command_type:<16}"
        try:
            result = await command_result(sent.handle)
        except CommandError as e:
            _say(f"  {label} REJECTED ({e.code}): {e}")
            return False
        again = "  [re-sent: first result]" if sent.resent or result.duplicate else ""
        if not result.event_ids:
            _say(f"  {label} no change{again}")
        else:
            where = f"v{result.stream_version} at {result.position}"
            _say(f"  {label} {result.aggregate_type} {result.aggregate_id} -> {where}{again}")
        return True


async def run_demo(settings: Settings, client: Client, *, ui_url: str | None = None) -> None:
    """Run the scenario against a running worker; safe to run again."""
    s = _Scenario(client, settings.task_queue)
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

    _say("\n3. A concurrent conflict: two suspensions of one tenant at once")
    _say("   (the loser reloads, decides again on the new state, and is refused)")
    await asyncio.gather(
        s.send("acme-suspend-1", ACME, "SuspendTenant", reason="audit (first)"),
        s.send("acme-suspend-2", ACME, "SuspendTenant", reason="audit (second)"),
    )
    await s.send("acme-reactivate", ACME, "ReactivateTenant")

    _say("\n4. The same command id again: the first run's result, nothing runs twice")
    await s.send("acme", ACME, "CreateTenant", name="Acme Corporation")

    _say("\n5. The audit trail of demo-acme, and its state back then")
    async with open_event_store(settings, migrate_schema=False) as rt:
        for e in await rt.store.read_stream(ACME, ACME):
            _say(f"  v{e.sequence_number} {e.created_at:%H:%M:%S} {e.event_type:<18} {e.data}")
        first = await rt.repository.load(Tenant, ACME, ACME, version=1)
        now = await rt.repository.load(Tenant, ACME, ACME)
        _say(
            f"  as of v1: {first.state.status}, {first.state.name!r};"
            f" now (v{now.version}): {now.state.status}"
        )

    _say("\nLook around:")
    if ui_url:
        _say(f"  Temporal Web UI     {ui_url}/namespaces/{settings.temporal_namespace}/workflows")
    _say(
        f"  Temporal CLI        temporal workflow list --address {settings.temporal_address}"
        f" --query \"TenantId='{ACME}'\""
    )
    _say(f"  the audit trail     acci events {ACME} --tenant {ACME}")
    _say(f"  a user's state      acci aggregate alice --tenant {ACME}")
    _say(f"  the event store     {_PSQL_HINT}")
    _say("  RabbitMQ            exchange acci.events, routing keys <tenant>.<aggregate>.<event>")
