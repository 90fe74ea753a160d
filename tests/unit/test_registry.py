"""The event registry: names to classes, encode/decode, and upcasting older stored versions."""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

import pydantic
import pytest

from acci.domain import CommandValidationError, DomainEvent, EventRegistry, UnknownEventTypeError
from acci.domain import registry as default_registry
from acci.domain.tenant import (
    TenantCreated,
    TenantDeleted,
    TenantReactivated,
    TenantRenamed,
    TenantSettings,
    TenantSettingsUpdated,
    TenantSuspended,
    UserSeatReleased,
    UserSeatReserved,
)
from acci.domain.user import (
    RoleAssigned,
    RoleRevoked,
    UserDeactivated,
    UserEmailChanged,
    UserRegistered,
)

# One example of every event the domain defines, with non-default values where there are any.
EXAMPLES: list[DomainEvent] = [
    TenantCreated(
        name="Acme",
        settings=TenantSettings(max_users=7, locale="fr-CA", features={"sso": True}),
    ),
    TenantRenamed(old_name="Acme", new_name="Acme 株式会社"),
    TenantSettingsUpdated(settings=TenantSettings(timezone="Asia/Tokyo")),
    TenantSuspended(reason="unpaid\ninvoice"),
    TenantReactivated(),
    TenantDeleted(reason=None),
    TenantDeleted(reason="contract ended"),
    UserSeatReserved(user_id="alice"),
    UserSeatReleased(user_id="alice"),
    UserRegistered(email="bob@example.com", display_name="Bob", roles=["member", "admin"]),
    UserEmailChanged(old_email="bob@example.com", new_email="o'brien@example.com"),
    RoleAssigned(role="owner"),
    RoleRevoked(role="viewer"),
    UserDeactivated(reason="left"),
]


class Ping(DomainEvent):
    """A test event."""

    event_type: ClassVar[str] = "Ping"
    event_version: ClassVar[int] = 3

    target: str
    hops: int = 0


def _registry_with_ping() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Ping)

    # v1 called the target "host"; v2 added "hops" under the name "ttl"; v3 renamed it.
    @registry.register_upcaster("Ping", 1)
    def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        data["target"] = data.pop("host")
        return data

    @registry.register_upcaster("Ping", 2)
    def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        data["hops"] = data.pop("ttl", 0)
        return data

    return registry


# --- registering ----------------------------------------------------------------------------


def test_registering_returns_the_class_so_it_works_as_a_decorator() -> None:
    registry = EventRegistry()
    assert registry.register(Ping) is Ping
    assert registry.event_class("Ping") is Ping
    assert registry.is_known("Ping")
    assert registry.event_types() == frozenset({"Ping"})


def test_registering_the_same_event_type_twice_is_rejected() -> None:
    registry = EventRegistry()
    registry.register(Ping)

    class OtherPing(DomainEvent):
        event_type: ClassVar[str] = "Ping"
        event_version: ClassVar[int] = 1

    with pytest.raises(ValueError, match="'Ping' is already registered"):
        registry.register(OtherPing)
    assert registry.event_class("Ping") is Ping


def test_a_subclass_without_its_own_event_type_cannot_be_registered() -> None:
    class LoudPing(Ping):
        pass

    with pytest.raises(TypeError, match="must define its own event_type"):
        EventRegistry().register(LoudPing)


@pytest.mark.parametrize("event_type", ["Ping.Pong", "ping", "Ping Pong", ""])
def test_an_event_type_that_cannot_be_a_routing_key_segment_is_rejected(event_type: str) -> None:
    cls = type("Bad", (DomainEvent,), {"event_type": event_type, "__annotations__": {}})
    with pytest.raises(TypeError, match="event_type"):
        EventRegistry().register(cls)


@pytest.mark.parametrize("version", [0, -1, True])
def test_an_event_version_below_one_is_rejected(version: int) -> None:
    cls = type("Bad", (DomainEvent,), {"event_type": "Bad", "event_version": version})
    with pytest.raises(TypeError, match="must define event_version, an int >= 1"):
        EventRegistry().register(cls)


def test_an_upcaster_for_an_unregistered_type_is_rejected() -> None:
    with pytest.raises(UnknownEventTypeError, match="'Ping'"):
        EventRegistry().register_upcaster("Ping", 1)


@pytest.mark.parametrize("from_version", [0, 3, 4])
def test_an_upcaster_outside_the_types_version_range_is_rejected(from_version: int) -> None:
    registry = EventRegistry()
    registry.register(Ping)
    with pytest.raises(ValueError, match="must be between 1 and 2"):
        registry.register_upcaster("Ping", from_version)


def test_a_second_upcaster_for_the_same_step_is_rejected() -> None:
    registry = _registry_with_ping()
    with pytest.raises(ValueError, match="from version 1 already exists"):
        registry.register_upcaster("Ping", 1)


# --- unknown types --------------------------------------------------------------------------


def test_looking_up_an_unknown_event_type_names_it() -> None:
    registry = EventRegistry()
    with pytest.raises(UnknownEventTypeError, match="unknown event type 'Foo'") as info:
        registry.event_class("Foo")
    assert info.value.event_type == "Foo"
    assert not registry.is_known("Foo")
    with pytest.raises(UnknownEventTypeError):
        registry.current_version("Foo")


def test_decoding_an_unknown_event_type_names_type_and_version() -> None:
    with pytest.raises(UnknownEventTypeError) as info:
        EventRegistry().decode("Foo", 3, {})
    assert str(info.value) == "unknown event type 'Foo' (version 3)"
    assert (info.value.event_type, info.value.event_version) == ("Foo", 3)


# --- upcasting ------------------------------------------------------------------------------


def test_upcasting_runs_the_whole_chain_up_to_the_current_version() -> None:
    registry = _registry_with_ping()
    assert registry.upcast("Ping", 1, {"host": "db", "ttl": 4}) == (3, {"target": "db", "hops": 4})
    assert registry.upcast("Ping", 2, {"target": "db"}) == (3, {"target": "db", "hops": 0})


def test_upcasting_never_changes_the_stored_data() -> None:
    registry = _registry_with_ping()
    stored = {"host": "db", "ttl": 4, "trace": {"via": ["a"]}}
    before = copy.deepcopy(stored)
    registry.upcast("Ping", 1, stored)
    assert stored == before


def test_data_at_the_current_version_is_returned_as_is_without_copying() -> None:
    registry = _registry_with_ping()
    stored = {"target": "db", "hops": 1}
    version, data = registry.upcast("Ping", 3, stored)
    assert version == 3
    assert data is stored


def test_a_version_newer_than_the_current_one_is_rejected() -> None:
    with pytest.raises(UnknownEventTypeError, match=r"\(version 4\): newer than the current"):
        _registry_with_ping().upcast("Ping", 4, {})


def test_a_version_below_one_is_rejected() -> None:
    with pytest.raises(UnknownEventTypeError, match="versions start at 1"):
        _registry_with_ping().upcast("Ping", 0, {})


def test_a_missing_step_in_the_upcaster_chain_is_rejected() -> None:
    registry = EventRegistry()
    registry.register(Ping)

    @registry.register_upcaster("Ping", 2)
    def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        return data

    with pytest.raises(UnknownEventTypeError, match="no upcaster from version 1 to 2"):
        registry.upcast("Ping", 1, {"host": "db"})


def test_an_upcaster_failing_on_malformed_stored_data_is_a_validation_error() -> None:
    with pytest.raises(CommandValidationError, match="cannot upcast Ping from version 1 to 2"):
        _registry_with_ping().upcast("Ping", 1, {"no_host": "db"})


def test_decoding_an_old_version_upcasts_it_first() -> None:
    registry = _registry_with_ping()
    assert registry.decode("Ping", 1, {"host": "db", "ttl": 2}) == Ping(target="db", hops=2)


# --- encode / decode ------------------------------------------------------------------------


def test_the_examples_cover_every_registered_event_type() -> None:
    assert {type(e).event_type for e in EXAMPLES} == default_registry.event_types()


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_survives_an_encode_decode_round_trip(event: DomainEvent) -> None:
    event_type, version, data = default_registry.encode(event)
    assert (event_type, version) == (event.event_type, event.event_version)
    assert default_registry.decode(event_type, version, data) == event


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_encoded_data_is_plain_json(event: DomainEvent) -> None:
    _, _, data = default_registry.encode(event)
    assert json.loads(json.dumps(data)) == data


def test_encoding_carries_the_payload_only() -> None:
    assert default_registry.encode(TenantSuspended(reason="unpaid")) == (
        "TenantSuspended",
        1,
        {"reason": "unpaid"},
    )


def test_encoding_an_event_of_an_unregistered_class_is_rejected() -> None:
    with pytest.raises(UnknownEventTypeError, match="is not the registered one"):
        EventRegistry().encode(Ping(target="db"))


def test_decoding_invalid_data_is_a_validation_error_naming_the_field() -> None:
    with pytest.raises(CommandValidationError) as info:
        default_registry.decode("TenantRenamed", 1, {"old_name": "Acme", "new_name": ""})
    assert str(info.value) == (
        "invalid TenantRenamed event (version 1): new_name: name must not be empty"
    )
    assert not isinstance(info.value, UnknownEventTypeError)


def test_decoding_data_with_unexpected_fields_is_rejected() -> None:
    with pytest.raises(CommandValidationError, match="tenant_id: Extra inputs are not permitted"):
        default_registry.decode("TenantReactivated", 1, {"tenant_id": "acme"})


# --- the default registry and UserRegistered v1 -> v2 ---------------------------------------


def test_importing_domain_registers_every_tenant_and_user_event() -> None:
    assert default_registry.event_types() == {
        "TenantCreated",
        "TenantRenamed",
        "TenantSettingsUpdated",
        "TenantSuspended",
        "TenantReactivated",
        "TenantDeleted",
        "UserSeatReserved",
        "UserSeatReleased",
        "UserRegistered",
        "UserEmailChanged",
        "RoleAssigned",
        "RoleRevoked",
        "UserDeactivated",
    }


def test_user_registered_is_at_version_two() -> None:
    assert default_registry.current_version("UserRegistered") == 2


def test_a_stored_v1_user_registered_is_read_with_display_name() -> None:
    stored = {"email": "bob@example.com", "name": "Bob", "roles": ["member"]}
    event = default_registry.decode("UserRegistered", 1, stored)
    assert event == UserRegistered(email="bob@example.com", display_name="Bob", roles=["member"])
    assert stored == {"email": "bob@example.com", "name": "Bob", "roles": ["member"]}


def test_every_event_type_with_older_versions_has_a_complete_upcaster_chain() -> None:
    for event_type in default_registry.event_types():
        for version in range(1, default_registry.current_version(event_type)):
            try:
                default_registry.upcast(event_type, version, {})
            except UnknownEventTypeError:
                pytest.fail(f"{event_type} cannot be upcast from version {version}")
            except CommandValidationError:
                pass  # the chain exists; {} is simply not valid old data


# --- events themselves ----------------------------------------------------------------------


def test_events_are_immutable() -> None:
    event = RoleAssigned(role="admin")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        event.role = "owner"  # type: ignore[misc]


def test_events_carry_no_envelope_fields() -> None:
    for event in EXAMPLES:
        assert not {"aggregate_id", "tenant_id", "timestamp", "event_id"} & set(
            type(event).model_fields
        )


def test_user_registered_keeps_its_roles_sorted_and_unique() -> None:
    event = UserRegistered(
        email="a@example.com", display_name="A", roles=["viewer", "admin", "viewer"]
    )
    assert event.roles == ["admin", "viewer"]


def test_stored_events_with_a_role_no_longer_offered_still_decode() -> None:
    # Retiring a role from ROLES must not make history unreadable.
    assert default_registry.decode("RoleAssigned", 1, {"role": "auditor"}) == RoleAssigned(
        role="auditor"
    )
