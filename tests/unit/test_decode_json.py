"""Decoding a stored event from its JSON text reads and refuses exactly what decoding its dict does.

Aggregate loads take the text path (pydantic parses and validates in one pass); every other read
path decodes dicts. The two must never disagree on what a stored event is.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from acci.domain import CommandValidationError, DomainEvent, UnknownEventTypeError
from acci.domain import registry as default_registry
from tests.unit.test_registry import EXAMPLES


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_domain_event_decodes_from_its_stored_text_as_from_its_dict(
    event: DomainEvent,
) -> None:
    event_type, version, data = default_registry.encode(event)
    text = json.dumps(data)
    from_text = default_registry.decode_json(event_type, version, text)
    assert from_text == default_registry.decode(event_type, version, data) == event
    assert type(from_text) is type(event)


# Each is wrong in a way JSON can carry: the text path must refuse it with the same message.
REFUSED: list[tuple[str, int, dict[str, Any]]] = [
    ("TenantRenamed", 1, {"old_name": "Acme", "new_name": 7}),
    ("TenantRenamed", 1, {"old_name": "Acme", "new_name": "  "}),
    ("TenantRenamed", 1, {"old_name": "Acme", "new_name": "B", "extra": 1}),
    ("TenantCreated", 1, {"name": "Acme", "settings": {"max_users": "100"}}),
    ("TenantCreated", 1, {"name": "Acme", "settings": {"max_users": 1.5}}),
    ("TenantCreated", 1, {"name": "Acme", "settings": {"features": {"sso": 1}}}),
    ("UserRegistered", 2, {"email": "bob@example.com", "display_name": "Bob", "roles": []}),
    ("RoleAssigned", 1, {}),
]


@pytest.mark.parametrize(("event_type", "version", "data"), REFUSED)
def test_stored_text_is_refused_as_its_dict_is(
    event_type: str, version: int, data: dict[str, Any]
) -> None:
    with pytest.raises(CommandValidationError) as from_dict:
        default_registry.decode(event_type, version, data)
    with pytest.raises(CommandValidationError) as from_text:
        default_registry.decode_json(event_type, version, json.dumps(data))
    assert str(from_text.value) == str(from_dict.value)
    assert not isinstance(from_text.value, UnknownEventTypeError)


def test_an_older_version_is_upcast_from_its_text() -> None:
    v1 = json.dumps({"email": "bob@example.com", "name": "Old Style", "roles": ["member"]})
    event = default_registry.decode_json("UserRegistered", 1, v1)
    assert event == default_registry.decode("UserRegistered", 1, json.loads(v1))


def test_an_unknown_type_or_version_or_text_that_is_not_json_is_a_typed_error() -> None:
    with pytest.raises(UnknownEventTypeError, match="'Invented'"):
        default_registry.decode_json("Invented", 1, "{}")
    with pytest.raises(UnknownEventTypeError, match="newer than the current version"):
        default_registry.decode_json("TenantRenamed", 9, "{}")
    with pytest.raises(CommandValidationError, match="TenantRenamed"):
        default_registry.decode_json("TenantRenamed", 1, '{"old_name": ')
