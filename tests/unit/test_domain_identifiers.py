"""Tenant and aggregate id rules, as the event store sees them too."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acci.domain import CommandValidationError
from acci.domain.identifiers import (
    AGGREGATE_ID_PATTERN,
    MAX_AGGREGATE_ID_LENGTH,
    MAX_TENANT_ID_LENGTH,
    TENANT_ID_PATTERN,
    TYPE_NAME_PATTERN,
    validate_aggregate_id,
    validate_tenant_id,
)


def test_the_length_limits_are_the_documented_ones() -> None:
    assert (MAX_TENANT_ID_LENGTH, MAX_AGGREGATE_ID_LENGTH) == (64, 128)


def test_a_tenant_id_may_not_contain_a_dot_because_it_becomes_a_routing_key_segment() -> None:
    with pytest.raises(CommandValidationError, match=r"tenant id 'acme\.eu'"):
        validate_tenant_id("acme.eu")
    assert validate_aggregate_id("acme.eu") == "acme.eu"


@pytest.mark.parametrize("value", [None, 42, b"acme", ["acme"]], ids=repr)
def test_an_id_that_is_not_a_string_is_a_validation_error(value: object) -> None:
    with pytest.raises(CommandValidationError, match="must be a string"):
        validate_tenant_id(value)
    with pytest.raises(CommandValidationError, match="must be a string"):
        validate_aggregate_id(value)


def test_a_trailing_newline_is_not_accepted_although_dollar_would_match_before_it() -> None:
    with pytest.raises(CommandValidationError):
        validate_tenant_id("acme\n")
    with pytest.raises(CommandValidationError):
        validate_aggregate_id("user-1\n")


def test_an_over_long_id_is_named_in_the_message_but_cut_short() -> None:
    with pytest.raises(CommandValidationError) as info:
        validate_aggregate_id("a" * 10_000)
    assert len(str(info.value)) < 200
    assert "1-128 characters" in str(info.value)


def test_ids_are_accepted_up_to_their_length_limit() -> None:
    assert validate_tenant_id("t" * MAX_TENANT_ID_LENGTH)
    assert validate_aggregate_id("a" * MAX_AGGREGATE_ID_LENGTH)


def test_ids_one_character_over_their_length_limit_are_refused() -> None:
    with pytest.raises(CommandValidationError):
        validate_tenant_id("t" * (MAX_TENANT_ID_LENGTH + 1))
    with pytest.raises(CommandValidationError):
        validate_aggregate_id("a" * (MAX_AGGREGATE_ID_LENGTH + 1))


@given(st.from_regex(TENANT_ID_PATTERN, fullmatch=True))
def test_every_string_matching_the_tenant_pattern_is_a_valid_tenant_and_aggregate_id(
    tenant_id: str,
) -> None:
    # Every tenant id is also an aggregate id: a Tenant's aggregate id is its tenant id.
    assert validate_tenant_id(tenant_id) == tenant_id
    assert validate_aggregate_id(tenant_id) == tenant_id


@given(st.text(max_size=140))
def test_the_validators_agree_with_the_exported_patterns(text: str) -> None:
    # The event store compiles the same patterns; both must draw the line in the same place.
    for pattern, validate in (
        (TENANT_ID_PATTERN, validate_tenant_id),
        (AGGREGATE_ID_PATTERN, validate_aggregate_id),
    ):
        if re.fullmatch(pattern, text):
            assert validate(text) == text
        else:
            with pytest.raises(CommandValidationError):
                validate(text)


@pytest.mark.parametrize("name", ["TenantCreated", "User", "A"])
def test_type_names_are_capitalised_alphanumerics(name: str) -> None:
    assert re.fullmatch(TYPE_NAME_PATTERN, name)


@pytest.mark.parametrize("name", ["tenantCreated", "Tenant.Created", "Tenant Created", ""])
def test_type_names_with_dots_spaces_or_lowercase_starts_are_not_type_names(name: str) -> None:
    assert not re.fullmatch(TYPE_NAME_PATTERN, name)
