"""Loading from a snapshot gives exactly the state loading without one gives (property test).

Random command histories of both aggregates are decided (refused commands write nothing, as on
the real path); at every split of the resulting events, the state folded up to the split goes
through a snapshot's JSON (``state_to_json`` → JSON text → ``state_from_json``) and the rest is
folded on top. The result must equal the fold of every event, version included.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from acci.domain import DomainError, EventSourced, Tenant, User
from acci.domain.command import Command
from acci.domain.events import DomainEvent
from acci.domain.roles import ROLES
from acci.domain.tenant_commands import (
    CreateTenant,
    DeleteTenant,
    ReactivateTenant,
    RenameTenant,
    SuspendTenant,
    UpdateTenantSettings,
)
from acci.domain.tenant_settings import TenantSettings
from acci.domain.user_commands import (
    AssignRole,
    ChangeUserEmail,
    DeactivateUser,
    RegisterUser,
    RevokeRole,
)

TENANT = "acme"
USER = "u-1"
names = st.sampled_from(["Acme", "Acme Ltd", "Ünïcode Co", "A"])
roles = st.sampled_from(sorted(ROLES))

create_tenant = st.builds(CreateTenant, tenant_id=st.just(TENANT), name=names)
rename_tenant = st.builds(RenameTenant, tenant_id=st.just(TENANT), name=names)
# Weighted by repetition: a deletion (which ends the history) is drawn rarely.
tenant_commands = st.one_of(
    create_tenant,
    rename_tenant,
    rename_tenant,
    rename_tenant,
    st.builds(
        UpdateTenantSettings,
        tenant_id=st.just(TENANT),
        settings=st.builds(
            TenantSettings,
            max_users=st.integers(1, 500),
            features=st.dictionaries(st.sampled_from(["beta", "sso"]), st.booleans()),
        ),
    ),
    st.builds(SuspendTenant, tenant_id=st.just(TENANT), reason=st.just("unpaid")),
    st.builds(ReactivateTenant, tenant_id=st.just(TENANT)),
    st.builds(ReactivateTenant, tenant_id=st.just(TENANT)),
    st.builds(DeleteTenant, tenant_id=st.just(TENANT)),
)
register_user = st.builds(
    RegisterUser,
    user_id=st.just(USER),
    email=st.sampled_from(["a@example.com", "b@example.org"]),
    display_name=names,
    roles=st.frozensets(roles, min_size=1, max_size=3),
)
user_commands = st.one_of(
    register_user,
    st.builds(ChangeUserEmail, user_id=st.just(USER), email=st.just("c@example.net")),
    st.builds(ChangeUserEmail, user_id=st.just(USER), email=st.just("d@example.net")),
    st.builds(AssignRole, user_id=st.just(USER), role=roles),
    st.builds(AssignRole, user_id=st.just(USER), role=roles),
    st.builds(AssignRole, user_id=st.just(USER), role=roles),
    st.builds(RevokeRole, user_id=st.just(USER), role=roles),
    st.builds(RevokeRole, user_id=st.just(USER), role=roles),
    st.builds(DeactivateUser, user_id=st.just(USER), reason=st.just("left")),
)


def decided(
    cls: type[EventSourced[Any, Any]], aggregate_id: str, commands: list[Command]
) -> list[DomainEvent]:
    """The events a history of commands stores (a refused command stores none)."""
    aggregate = cls(aggregate_id, TENANT)
    for command in commands:
        try:
            aggregate.handle(command)
        except DomainError:
            continue
    return list(aggregate.uncommitted_events)


def assert_every_split_loads_the_same(
    cls: type[EventSourced[Any, Any]], aggregate_id: str, events: list[DomainEvent]
) -> None:
    folded = cls.from_events(aggregate_id, TENANT, events)
    for split in range(len(events) + 1):
        head = cls.from_events(aggregate_id, TENANT, events[:split])
        stored = json.loads(json.dumps(head.state_to_json()))  # what the snapshot row holds
        restored = cls.from_events(
            aggregate_id,
            TENANT,
            events[split:],
            state=cls.state_from_json(stored),
            version=split,
        )
        assert (restored.version, restored.state) == (folded.version, folded.state), split


@settings(max_examples=150, deadline=None)
@given(create_tenant, st.lists(tenant_commands, min_size=10, max_size=40))
def test_a_tenant_loaded_from_a_snapshot_at_any_version_equals_the_full_fold(
    create: Command, commands: list[Command]
) -> None:
    events = decided(Tenant, TENANT, [create, *commands])
    assert_every_split_loads_the_same(Tenant, TENANT, events)


@settings(max_examples=150, deadline=None)
@given(register_user, st.lists(user_commands, min_size=10, max_size=40))
def test_a_user_loaded_from_a_snapshot_at_any_version_equals_the_full_fold(
    register: Command, commands: list[Command]
) -> None:
    events = decided(User, USER, [register, *commands])
    assert_every_split_loads_the_same(User, USER, events)
