"""What a command input may hold, and what a command result says: no services."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pydantic
import pytest

from acci.activities.models import MAX_PAYLOAD_DEPTH, CommandInput, CommandResult
from acci.domain.json_values import json_problem
from acci.domain.metadata import reserved_keys
from acci.eventstore.records import Position


def _input(**fields: Any) -> CommandInput:
    values: dict[str, Any] = {
        "command_id": uuid.uuid4(),
        "tenant_id": "acme",
        "command_type": "CreateTenant",
        "payload": {"name": "Acme"},
    }
    return CommandInput(**{**values, **fields})


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_a_payload_may_nest_up_to_the_limit() -> None:
    assert _input(payload=_nested(MAX_PAYLOAD_DEPTH)).payload == _nested(MAX_PAYLOAD_DEPTH)


@pytest.mark.parametrize("depth", [MAX_PAYLOAD_DEPTH + 1, 10_000])
def test_a_payload_nested_deeper_is_refused_without_recursion(depth: int) -> None:
    with pytest.raises(pydantic.ValidationError, match=f"nested more than {MAX_PAYLOAD_DEPTH}"):
        _input(payload=_nested(depth))


@pytest.mark.parametrize(
    "fields",
    [
        {"tenant_id": "ac\ud800me"},
        {"command_type": "Create\udfff"},
        {"payload": {"name": ["ok", "lone \ud800"]}},
        {"payload": {"\udc00": "key"}},
        {"metadata": {"request_id": "\ud83d"}},
    ],
)
def test_text_with_a_lone_surrogate_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError, match="lone surrogate"):
        _input(**fields)


def test_emoji_and_other_real_text_is_accepted() -> None:
    assert _input(payload={"name": "Acme 🚀 ñ 中"}).payload["name"] == "Acme 🚀 ñ 中"


@pytest.mark.parametrize(
    "metadata",
    [
        {"correlation_id": "forged"},
        {"command_type": "DeleteTenant"},
        {"causation_id": "x"},
        {"actor": "root"},
        {"Correlation-Id": "forged"},
        {" tenant_id": "other"},
    ],
)
def test_metadata_may_not_name_envelope_fields(metadata: dict[str, str]) -> None:
    (key,) = metadata
    with pytest.raises(pydantic.ValidationError, match=f"{key!r} name fields the system records"):
        _input(metadata=metadata)


def test_metadata_holds_context_strings() -> None:
    metadata = {"request_id": "r-1", "traceparent": "00-abc-def-01", "client": "acci-cli"}
    assert _input(metadata=metadata).metadata == metadata
    with pytest.raises(pydantic.ValidationError, match=r"metadata\.request_id"):
        _input(metadata={"request_id": 7})


def test_reserved_keys_are_named_as_sent() -> None:
    assert reserved_keys(["Actor", "request_id", "event-type"]) == ["Actor", "event-type"]


def test_json_problem_says_where() -> None:
    assert json_problem({"a": [{"b": "x\x00"}]}, max_depth=5) is None
    assert json_problem({"a": [{"b": "x\x00"}]}, max_depth=5, allow_nul=False) == (
        "has a string at 'a[0].b' that contains a NUL character"
    )
    assert json_problem({"a": [[]]}, max_depth=2) == "is nested more than 2 levels deep at 'a[0]'"


def _result(positions: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "tenant_id": "acme",
        "aggregate_id": "acme",
        "aggregate_type": "Tenant",
        "stream_version": len(positions),
        "event_ids": [str(uuid.uuid4()) for _ in positions],
        "global_positions": [int(p.split(":")[1]) for p in positions],
        "positions": positions,
        **fields,
    }


def test_a_result_serialises_its_position() -> None:
    result = CommandResult.model_validate(_result(["10:1", "10:2"]))
    assert result.position == "10:2"
    dumped = result.model_dump(mode="json")
    assert dumped["position"] == "10:2"
    # The JSON a client gets back (with position) decodes again under extra="forbid".
    assert CommandResult.model_validate_json(result.model_dump_json()) == result


def test_a_result_recorded_before_position_existed_still_decodes() -> None:
    assert CommandResult.model_validate(_result(["7:3"])).position == "7:3"
    assert CommandResult.model_validate(_result([])).position is None


def test_a_sent_position_never_disagrees_with_the_positions() -> None:
    assert CommandResult.model_validate(_result(["7:3"], position="1:1")).position == "7:3"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("abc", "expected 'transaction:position'"),
        ("-1:1", "negative"),
        ("99999999999999999999999:1", "past the largest, 9223372036854775807"),
        ("1:9223372036854775808", "past the largest"),
    ],
)
def test_a_position_is_two_bigints(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        Position.parse(text)
    assert Position.parse("9223372036854775807:9223372036854775807") == Position(
        2**63 - 1, 2**63 - 1
    )
