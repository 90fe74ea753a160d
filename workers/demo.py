"""``acci demo``: a short scripted scenario against the event store, printed as it runs."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from activities.commands import CommandHandler, CommandOutcome
from domain import Tenant, parse_command
from domain.command import Command
from domain.errors import CommandError
from domain.tenant_commands import CreateTenant, RenameTenant, SuspendTenant
from domain.user_commands import AssignRole, RegisterUser
from eventstore.errors import ConcurrencyError
from workers.runtime import EventStoreRuntime, open_event_store
from workers.settings import Settings

TENANT = "demo-acme"
# Fixed command ids: running the demo again re-sends the same commands, which shows that a
# re-sent command returns its first result and stores nothing new.
_NAMESPACE = uuid.UUID("0f7d7c36-2a0e-4d7e-8a44-0c1f3d9b6e01")


_PSQL_HINT = (
    "psql postgresql://postgres@127.0.0.1:5432/acci -c"
    " 'SELECT global_position, tenant_id, aggregate_id, event_type FROM event_store.events'"
)


def _command_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _outcome(outcome: CommandOutcome) -> str:
    if not outcome.event_ids:
        return f"no change (stream at v{outcome.stream_version})"
    again = "  [re-sent: first result, nothing stored]" if outcome.duplicate else ""
    return (
        f"{outcome.aggregate_type} {outcome.aggregate_id} -> v{outcome.stream_version},"
        f" {len(outcome.event_ids)} event(s) at {', '.join(map(str, outcome.positions))}{again}"
    )


async def _send(handler: CommandHandler, name: str, command: Command) -> None:
    try:
        outcome = await handler.handle(TENANT, command, command_id=_command_id(name))
    except CommandError as e:
        _say(f"  {command.command_type:<16} REJECTED ({e.code}): {e}")
        return
    _say(f"  {command.command_type:<16} {_outcome(outcome)}")


def _rejected(command_type: str, data: dict[str, Any]) -> None:
    try:
        parse_command(command_type, data)
    except CommandError as e:
        _say(f"  {command_type:<16} REJECTED ({e.code}): {e}")


async def run_demo(settings: Settings) -> None:
    """Run the scenario; safe to run again (it re-sends the same commands)."""
    url = settings.database_url.get_secret_value()
    _say(f"ACCI demo: event store at {url.split('@')[-1]}")
    async with open_event_store(settings) as rt:
        handler = CommandHandler(rt.store, rt.repository)
        _say("\n1. Commands: load, decide, append with the expected version")
        await _send(handler, "create", CreateTenant(tenant_id=TENANT, name="Acme Corporation"))
        await _send(
            handler,
            "alice",
            RegisterUser(
                user_id="alice",
                email="alice@acme.example",
                display_name="Alice",
                roles=frozenset({"owner"}),
            ),
        )
        await _send(
            handler,
            "bob",
            RegisterUser(user_id="bob", email="bob@acme.example", display_name="Bob"),
        )
        await _send(handler, "bob-admin", AssignRole(user_id="bob", role="admin"))

        _say("\n2. Bad input and broken rules: a typed error, nothing written")
        _rejected("RegisterUser", {"user_id": "eve", "email": "not-an-email", "display_name": "E"})
        _rejected("CreateTenant", {"tenant_id": "x'; DROP TABLE events;--", "name": "Evil"})
        await _send(handler, "create-again", CreateTenant(tenant_id=TENANT, name="Acme again"))
        await _send(handler, "suspend", SuspendTenant(tenant_id=TENANT, reason="billing"))
        await _send(handler, "suspend-again", SuspendTenant(tenant_id=TENANT, reason="twice"))

        _say("\n3. Re-sending a command with the same id: its first result, nothing new stored")
        await _send(handler, "create", CreateTenant(tenant_id=TENANT, name="Acme Corporation"))

        _say("\n4. Optimistic concurrency: two writers decide from the same version")
        await _conflict(rt)

        _say("\n5. The audit trail and time travel")
        stream = await rt.store.read_stream(TENANT, TENANT)
        for e in stream:
            _say(f"  v{e.sequence_number} {e.event_type:<22} {e.data}")
        first = await rt.repository.load(Tenant, TENANT, TENANT, version=1)
        now = await rt.repository.load(Tenant, TENANT, TENANT)
        _say(f"  as of v1: status={first.state.status}, name={first.state.name!r}")
        _say(f"  now (v{now.version}): status={now.state.status}, name={now.state.name!r}")
        created = await rt.repository.snapshot(now)
        _say(f"  snapshot at v{now.version}: {'saved' if created else 'already there'}")

        _say("\n6. The global order (gap-free), newest events last")
        head = await rt.store.head(tenant_id=TENANT)
        page = await rt.store.read_all(tenant_id=TENANT, limit=1000)
        for e in page[-6:]:
            _say(f"  {e.position!s:>12}  {e.aggregate_type}/{e.aggregate_id}  {e.event_type}")
        _say(f"  head for {TENANT}: {head}")

    _say(
        "\nLook around:\n"
        f"  acci events {TENANT} --tenant {TENANT}\n"
        f"  acci aggregate alice --tenant {TENANT}\n"
        f"  {_PSQL_HINT}"
    )


async def _conflict(rt: EventStoreRuntime) -> None:
    first, second = await asyncio.gather(
        rt.repository.load(Tenant, TENANT, TENANT), rt.repository.load(Tenant, TENANT, TENANT)
    )
    base = first.version
    first.handle(RenameTenant(tenant_id=TENANT, name=f"Acme v{base} (writer A)"))
    second.handle(RenameTenant(tenant_id=TENANT, name=f"Acme v{base} (writer B)"))
    for label, agg in (("A", first), ("B", second)):
        try:
            result = await rt.repository.save(agg, command_id=_command_id(f"rename-{base}-{label}"))
        except ConcurrencyError as e:
            _say(f"  writer {label}: REJECTED (concurrency): {e}")
        else:
            assert result is not None
            _say(f"  writer {label}: stored at v{result.stream_version}")
