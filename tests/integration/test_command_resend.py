"""A command sent again reaches the handler (a retried attempt, a plain ``temporal workflow
start``): its first outcome stands, whatever deciding it again against the state it produced
would do, and an id used for another command is refused. The handler decides first and asks
the store about earlier sends only when the decision fails, decides nothing, or collides."""

from __future__ import annotations

import uuid

import pytest

from acci.activities.command_handler import CommandHandler
from acci.domain import Tenant
from acci.domain.errors import DomainError
from acci.domain.tenant_commands import CreateTenant, RenameTenant, UpdateTenantSettings
from acci.domain.tenant_settings import TenantSettings
from acci.eventstore.errors import CommandIdReusedError
from acci.eventstore.records import NO_STREAM, NewEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore


def _tenant(name: str) -> str:
    return f"t-resend-{name}-{uuid.uuid4().hex[:6]}"


async def _events(store: EventStore, tenant: str) -> list[tuple[int, str]]:
    stream = await store.read_stream(tenant, tenant, aggregate_type=Tenant.aggregate_type)
    return [(e.sequence_number, e.event_type) for e in stream]


async def test_a_create_sent_again_returns_its_first_outcome_not_already_exists(
    store: EventStore, repository: AggregateRepository
) -> None:
    handler = CommandHandler(store, repository)
    tenant, command_id = _tenant("create"), uuid.uuid4()
    create = CreateTenant(tenant_id=tenant, name="Acme")
    first = await handler.handle(tenant, create, command_id=command_id)
    again = await handler.handle(tenant, create, command_id=command_id)
    assert not first.duplicate and again.duplicate
    assert (again.event_ids, again.positions, again.stream_version) == (
        first.event_ids,
        first.positions,
        1,
    )
    # Deciding it anew is still refused: only the same command id finds the first outcome.
    with pytest.raises(DomainError, match="already exists"):
        await handler.handle(tenant, create, command_id=uuid.uuid4())
    assert await _events(store, tenant) == [(1, "TenantCreated")]


async def test_a_rename_sent_again_after_it_landed_returns_its_first_outcome(
    store: EventStore, repository: AggregateRepository
) -> None:
    """Deciding it again against the state it produced decides nothing (the name is set)."""
    handler = CommandHandler(store, repository)
    tenant = _tenant("rename")
    create = CreateTenant(tenant_id=tenant, name="Old")
    await handler.handle(tenant, create, command_id=uuid.uuid4())
    rename, command_id = RenameTenant(tenant_id=tenant, name="New"), uuid.uuid4()
    first = await handler.handle(tenant, rename, command_id=command_id)
    again = await handler.handle(tenant, rename, command_id=command_id)
    assert again.duplicate and again.event_ids == first.event_ids and again.stream_version == 2
    # A rename to the name it has, under a new id, is a no-op: nothing stored, not a re-send.
    noop = await handler.handle(tenant, rename, command_id=uuid.uuid4())
    assert (noop.duplicate, noop.event_ids, noop.stream_version) == (False, (), 2)
    assert await _events(store, tenant) == [(1, "TenantCreated"), (2, "TenantRenamed")]


async def test_a_command_sent_again_after_the_stream_moved_on_is_not_stored_twice(
    store: EventStore, repository: AggregateRepository
) -> None:
    """Deciding it again yields events (the state changed since): the append's command row
    collides, and the first outcome stands."""
    handler = CommandHandler(store, repository)
    tenant = _tenant("moved")
    await handler.handle(tenant, CreateTenant(tenant_id=tenant, name="T"), command_id=uuid.uuid4())
    small = UpdateTenantSettings(tenant_id=tenant, settings=TenantSettings(max_users=5))
    command_id = uuid.uuid4()
    first = await handler.handle(tenant, small, command_id=command_id)
    large = UpdateTenantSettings(tenant_id=tenant, settings=TenantSettings(max_users=50))
    await handler.handle(tenant, large, command_id=uuid.uuid4())
    again = await handler.handle(tenant, small, command_id=command_id)
    assert again.duplicate and again.event_ids == first.event_ids and again.stream_version == 2
    assert await _events(store, tenant) == [
        (1, "TenantCreated"),
        (2, "TenantSettingsUpdated"),
        (3, "TenantSettingsUpdated"),
    ]
    loaded = await repository.load(Tenant, tenant, tenant)
    assert loaded.state.settings.max_users == 50


async def test_an_id_used_for_another_command_is_refused_however_its_decision_goes(
    store: EventStore, repository: AggregateRepository
) -> None:
    handler = CommandHandler(store, repository)
    tenant, command_id = _tenant("reused"), uuid.uuid4()
    await handler.handle(tenant, CreateTenant(tenant_id=tenant, name="A"), command_id=command_id)
    # Its decision succeeds (the append's command row collides) ...
    for name in ("B", "A"):  # ... or decides nothing (the name it has) ...
        with pytest.raises(CommandIdReusedError):
            rename = RenameTenant(tenant_id=tenant, name=name)
            await handler.handle(tenant, rename, command_id=command_id)
    # ... or is refused (the tenant exists): the reuse is what the sender is told, every time.
    other = CreateTenant(tenant_id=tenant, name="Another name")
    with pytest.raises(CommandIdReusedError):
        await handler.handle(tenant, other, command_id=command_id)
    assert await _events(store, tenant) == [(1, "TenantCreated")]


async def test_an_id_another_tenant_used_is_refused_and_reveals_nothing(
    store: EventStore, repository: AggregateRepository
) -> None:
    handler = CommandHandler(store, repository)
    first, second, command_id = _tenant("first"), _tenant("second"), uuid.uuid4()
    await handler.handle(first, CreateTenant(tenant_id=first, name="One"), command_id=command_id)
    with pytest.raises(CommandIdReusedError) as refused:
        await handler.handle(
            second, CreateTenant(tenant_id=second, name="Two"), command_id=command_id
        )
    assert first not in str(refused.value) and "One" not in str(refused.value)
    assert await _events(store, second) == []


async def test_an_id_another_tenant_used_is_refused_however_this_decision_goes(
    store: EventStore, repository: AggregateRepository
) -> None:
    """Refused as a reused id, not as what deciding it here says: a tenant that does not
    exist, or a rename that would change nothing."""
    handler = CommandHandler(store, repository)
    first, missing, command_id = _tenant("owner"), _tenant("missing"), uuid.uuid4()
    await handler.handle(first, CreateTenant(tenant_id=first, name="One"), command_id=command_id)
    with pytest.raises(CommandIdReusedError):
        await handler.handle(
            missing, RenameTenant(tenant_id=missing, name="X"), command_id=command_id
        )
    other = _tenant("other")
    await handler.handle(other, CreateTenant(tenant_id=other, name="Same"), command_id=uuid.uuid4())
    with pytest.raises(CommandIdReusedError):
        await handler.handle(
            other, RenameTenant(tenant_id=other, name="Same"), command_id=command_id
        )
    assert await _events(store, missing) == [] and len(await _events(store, other)) == 1


async def test_a_command_stored_under_the_earlier_fingerprint_is_still_a_resend(
    store: EventStore, repository: AggregateRepository
) -> None:
    # Stored by ACCI before fingerprints left defaults out (every field, defaults filled in):
    # the same command sent after the upgrade gets its first result, not "already used".
    handler = CommandHandler(store, repository)
    tenant, command_id = _tenant("legacy"), uuid.uuid4()
    create = CreateTenant(tenant_id=tenant, name="Acme")
    current, earlier = create.fingerprints(tenant)
    assert current != earlier
    stored = await store.append(
        tenant,
        tenant,
        Tenant.aggregate_type,
        [NewEvent("TenantCreated", 1, {"name": "Acme", "settings": TenantSettings().model_dump()})],
        command_id=command_id,
        expected_version=NO_STREAM,
        fingerprint=earlier,
    )
    again = await handler.handle(tenant, create, command_id=command_id)
    assert again.duplicate and again.event_ids == stored.event_ids
    # Another command under that id is still refused.
    with pytest.raises(CommandIdReusedError):
        await handler.handle(
            tenant, CreateTenant(tenant_id=tenant, name="Other"), command_id=command_id
        )
    assert await _events(store, tenant) == [(1, "TenantCreated")]
