"""The EventSourced base: versions, uncommitted events, rebuilding and snapshots."""

from __future__ import annotations

import json

import pytest

from acci.domain import CommandValidationError, DomainError, Tenant, User
from acci.domain.tenant import (
    CreateTenant,
    RenameTenant,
    SuspendTenant,
    TenantCreated,
    TenantRenamed,
    TenantSettings,
    TenantState,
    TenantStatus,
    TenantSuspended,
)
from acci.domain.user import RoleAssigned, UserRegistered, UserState, UserStatus

T = "acme"
HISTORY = [
    TenantCreated(name="Acme", settings=TenantSettings()),
    TenantRenamed(old_name="Acme", new_name="Acme Two"),
    TenantSuspended(reason="unpaid"),
]


def test_a_new_aggregate_is_at_version_zero_in_its_initial_state() -> None:
    tenant = Tenant(T, T)
    assert tenant.version == 0
    assert tenant.state == TenantState()
    assert tenant.state.status is TenantStatus.NONE
    assert tenant.uncommitted_events == ()


def test_the_version_counts_the_events_applied() -> None:
    tenant = Tenant.from_events(T, T, HISTORY)
    assert tenant.version == 3
    assert tenant.committed_version == 3


def test_stored_events_are_not_uncommitted() -> None:
    assert Tenant.from_events(T, T, HISTORY).uncommitted_events == ()


def test_handling_a_command_applies_and_keeps_its_events_as_uncommitted() -> None:
    tenant = Tenant(T, T)
    events = tenant.handle(CreateTenant(tenant_id=T, name="Acme"))
    assert events == [TenantCreated(name="Acme", settings=TenantSettings())]
    assert tenant.uncommitted_events == tuple(events)
    assert tenant.version == 1
    assert tenant.state.status is TenantStatus.ACTIVE


def test_the_committed_version_is_the_expected_version_for_appending() -> None:
    tenant = Tenant.from_events(T, T, HISTORY[:1])
    tenant.handle(RenameTenant(tenant_id=T, name="Acme Two"))
    tenant.handle(SuspendTenant(tenant_id=T, reason="unpaid"))
    assert (tenant.committed_version, tenant.version) == (1, 3)
    assert len(tenant.uncommitted_events) == 2


def test_clearing_uncommitted_events_keeps_state_and_version() -> None:
    tenant = Tenant(T, T)
    tenant.handle(CreateTenant(tenant_id=T, name="Acme"))
    state = tenant.state
    tenant.clear_uncommitted_events()
    assert tenant.uncommitted_events == ()
    assert (tenant.version, tenant.committed_version) == (1, 1)
    assert tenant.state == state


def test_uncommitted_events_are_a_snapshot_not_a_live_view() -> None:
    tenant = Tenant(T, T)
    before = tenant.uncommitted_events
    tenant.handle(CreateTenant(tenant_id=T, name="Acme"))
    assert before == ()
    assert isinstance(tenant.uncommitted_events, tuple)


def test_a_no_op_command_changes_neither_version_nor_uncommitted_events() -> None:
    tenant = Tenant.from_events(T, T, HISTORY[:1])
    assert tenant.handle(RenameTenant(tenant_id=T, name="Acme")) == []
    assert (tenant.version, tenant.uncommitted_events) == (1, ())


def test_a_refused_command_leaves_the_aggregate_unchanged() -> None:
    tenant = Tenant.from_events(T, T, HISTORY)
    state = tenant.state
    with pytest.raises(DomainError):
        tenant.handle(SuspendTenant(tenant_id=T, reason="again"))
    assert (tenant.state, tenant.version, tenant.uncommitted_events) == (state, 3, ())


def test_apply_event_folds_one_event_and_counts_it() -> None:
    tenant = Tenant(T, T)
    tenant.apply_event(HISTORY[0])
    assert (tenant.version, tenant.state.name, tenant.uncommitted_events) == (1, "Acme", ())


def test_evolve_returns_a_new_state_and_leaves_the_old_one_alone() -> None:
    before = TenantState()
    after = Tenant.evolve(before, HISTORY[0])
    assert before == TenantState()
    assert after.status is TenantStatus.ACTIVE


def test_decide_is_pure_and_gives_the_same_events_for_the_same_input() -> None:
    state = Tenant.from_events(T, T, HISTORY[:1]).state
    command = RenameTenant(tenant_id=T, name="Other")
    assert Tenant.decide(command, state) == Tenant.decide(command, state)
    assert state.name == "Acme"


# --- snapshots ------------------------------------------------------------------------------


def test_rebuilding_on_a_snapshot_equals_rebuilding_from_the_start() -> None:
    full = Tenant.from_events(T, T, HISTORY)
    at_two = Tenant.from_events(T, T, HISTORY[:2])
    snapshot = Tenant.state_from_json(at_two.state_to_json())
    resumed = Tenant.from_events(T, T, HISTORY[2:], state=snapshot, version=2)
    assert resumed.state == full.state
    assert resumed.version == full.version == 3
    assert resumed.uncommitted_events == ()


def test_a_snapshot_with_no_later_events_is_the_aggregate_as_it_was() -> None:
    state = Tenant.from_events(T, T, HISTORY).state
    tenant = Tenant.from_events(T, T, [], state=state, version=3)
    assert (tenant.state, tenant.version) == (state, 3)


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        (
            Tenant.from_events(
                T,
                T,
                [TenantCreated(name="Acme", settings=TenantSettings(features={"sso": True}))],
            ),
            {
                "status": "active",
                "name": "Acme",
                "settings": {
                    "max_users": 100,
                    "locale": "en",
                    "timezone": "UTC",
                    "features": {"sso": True},
                },
                "active_users": 0,
            },
        ),
        (
            User.from_events(
                "u1",
                T,
                [
                    UserRegistered(email="a@example.com", display_name="A", roles=["viewer"]),
                    RoleAssigned(role="admin"),
                    RoleAssigned(role="owner"),
                ],
            ),
            {
                "status": "active",
                "email": "a@example.com",
                "display_name": "A",
                "roles": ["admin", "owner", "viewer"],
            },
        ),
    ],
    ids=["tenant", "user"],
)
def test_state_round_trips_through_snapshot_json(
    aggregate: Tenant | User, expected: dict[str, object]
) -> None:
    data = aggregate.state_to_json()
    assert data == expected
    assert json.loads(json.dumps(data)) == data
    assert type(aggregate).state_from_json(data) == aggregate.state


def test_user_roles_in_snapshot_json_are_sorted_for_stable_snapshots() -> None:
    state = UserState(status=UserStatus.ACTIVE, roles=frozenset({"viewer", "admin", "owner"}))
    user = User("u1", T, state=state, version=1)
    assert user.state_to_json()["roles"] == ["admin", "owner", "viewer"]


def test_a_corrupt_snapshot_is_a_validation_error_not_a_misread_state() -> None:
    with pytest.raises(CommandValidationError, match=r"invalid Tenant state \(schema 2\): status"):
        Tenant.state_from_json({"status": "archived", "name": "Acme"})


def test_every_aggregate_declares_type_and_state_schema_version() -> None:
    assert (Tenant.aggregate_type, Tenant.state_schema_version) == ("Tenant", 2)
    assert (User.aggregate_type, User.state_schema_version) == ("User", 1)


# --- construction ---------------------------------------------------------------------------


def test_an_aggregate_refuses_an_invalid_tenant_id() -> None:
    with pytest.raises(CommandValidationError, match=r"tenant id 'acme\.eu'"):
        User("u1", "acme.eu")


def test_an_aggregate_refuses_an_invalid_aggregate_id() -> None:
    with pytest.raises(CommandValidationError, match="aggregate id"):
        User("x'; DROP TABLE events;--", T)


def test_an_aggregate_refuses_a_negative_version() -> None:
    with pytest.raises(ValueError, match="version must be >= 0"):
        Tenant(T, T, version=-1)


def test_the_repr_names_id_tenant_and_version() -> None:
    assert repr(Tenant.from_events(T, T, HISTORY)) == (
        "Tenant('acme', tenant='acme', version=3, uncommitted=0)"
    )
