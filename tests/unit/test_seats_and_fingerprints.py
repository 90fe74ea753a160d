"""The seat rule across Tenant and User, and what makes two sends one command: no services."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import pytest

from acci.domain import DomainError, Tenant
from acci.domain.command import Command, _canonical
from acci.domain.seats import seat_events
from acci.domain.tenant import (
    RenameTenant,
    TenantCreated,
    TenantSettings,
    UserSeatReleased,
    UserSeatReserved,
)
from acci.domain.tenant_commands import CreateTenant
from acci.domain.user import RegisterUser, UserDeactivated, UserEmailChanged, UserRegistered

T = "acme"
REGISTERED = UserRegistered(email="a@acme.example", display_name="A", roles=["member"])


def tenant_with(max_users: int, seats: int) -> Tenant:
    events = [TenantCreated(name="Acme", settings=TenantSettings(max_users=max_users))]
    events += [UserSeatReserved(user_id=f"u{i}") for i in range(seats)]
    return Tenant.from_events(T, T, events)


def test_a_registration_takes_a_seat_while_one_is_free() -> None:
    tenant = tenant_with(max_users=2, seats=1)
    assert seat_events(T, tenant.state, "bob", [REGISTERED]) == [UserSeatReserved(user_id="bob")]


def test_a_registration_is_refused_when_every_seat_is_taken() -> None:
    tenant = tenant_with(max_users=2, seats=2)
    with pytest.raises(DomainError, match=r"2 active users, its limit \(max_users 2\)") as e:
        seat_events(T, tenant.state, "bob", [REGISTERED])
    assert e.value.reason == "user_limit_reached"


def test_a_deactivation_frees_its_seat_and_other_changes_take_none() -> None:
    tenant = tenant_with(max_users=2, seats=2)
    freed = seat_events(T, tenant.state, "u0", [UserDeactivated(reason=None)])
    assert freed == [UserSeatReleased(user_id="u0")]
    assert (
        seat_events(
            T,
            tenant.state,
            "u0",
            [UserEmailChanged(old_email="a@acme.example", new_email="d@acme.example")],
        )
        == []
    )
    tenant.record(freed)
    assert tenant.state.active_users == 1 and tenant.uncommitted_events == (freed[0],)


def test_the_same_command_has_the_same_fingerprint_whatever_its_set_order() -> None:
    one = RegisterUser(
        user_id="bob", email="b@x.example", display_name="B", roles={"admin", "member"}
    )
    two = RegisterUser(
        user_id="bob", email="b@x.example", display_name="B", roles={"member", "admin"}
    )
    assert one.fingerprint(T) == two.fingerprint(T)


@pytest.mark.parametrize(
    "other",
    [
        RegisterUser(user_id="bob", email="other@x.example", display_name="B"),
        RegisterUser(user_id="eve", email="b@x.example", display_name="B"),
        RenameTenant(tenant_id=T, name="B"),
    ],
    ids=["payload", "aggregate", "type"],
)
def test_another_command_has_another_fingerprint(other: object) -> None:
    bob = RegisterUser(user_id="bob", email="b@x.example", display_name="B")
    assert bob.fingerprint(T) != other.fingerprint(T)  # type: ignore[attr-defined]
    assert bob.fingerprint(T) != bob.fingerprint("other-tenant")


class _Lend(Command):
    """A command type as one deploy had it."""

    command_type: ClassVar[str] = "Lend"
    book_id: str

    @property
    def aggregate_id(self) -> str:
        return self.book_id


class _LendWithDays(_Lend):
    """The same type a deploy later: an optional field added, with a default."""

    days: int = 14


def test_a_field_added_with_a_default_keeps_the_identity_of_commands_sent_before() -> None:
    before, after = _Lend(book_id="b1"), _LendWithDays(book_id="b1")
    assert before.fingerprint(T) == after.fingerprint(T)
    # Sending the default is leaving it out; another value is another command.
    assert _LendWithDays(book_id="b1", days=14).fingerprint(T) == after.fingerprint(T)
    assert _LendWithDays(book_id="b1", days=7).fingerprint(T) != after.fingerprint(T)


def test_the_fingerprint_stored_before_defaults_were_left_out_is_still_known() -> None:
    create = CreateTenant(tenant_id=T, name="Acme")
    current, earlier = create.fingerprints(T)
    assert current == create.fingerprint(T) and earlier != current
    # Every field, defaults filled in, as ACCI stored it before 2026-12-02.
    fields = _canonical(create.model_dump(mode="python"))
    body = {"command_type": "CreateTenant", "tenant_id": T, "aggregate_id": T, "fields": fields}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    assert earlier == hashlib.sha256(text.encode()).hexdigest()
