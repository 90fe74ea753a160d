"""The error trees: codes, attributes, messages, and pydantic errors turned into one message."""

from __future__ import annotations

import copy
import pickle
from typing import Annotated

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field

from acci.domain import errors
from acci.domain.errors import (
    CommandError,
    CommandValidationError,
    ConcurrencyError,
    DomainError,
    PersistenceError,
    UnknownEventTypeError,
    validation_error_from_pydantic,
)
from acci.readmodels.errors import (
    NotFoundError,
    ProjectionError,
    QueryError,
    QueryValidationError,
    ReadModelError,
)


@pytest.mark.parametrize(
    ("error_type", "code"),
    [
        (CommandValidationError, "validation"),
        (ConcurrencyError, "concurrency"),
        (PersistenceError, "persistence"),
        (DomainError, "domain"),
        (UnknownEventTypeError, "validation"),
    ],
)
def test_every_command_error_is_a_command_error_with_its_code(
    error_type: type[CommandError], code: str
) -> None:
    assert issubclass(error_type, CommandError)
    assert not issubclass(error_type, QueryError)
    assert error_type.code == code


@pytest.mark.parametrize(
    ("error_type", "code"),
    [
        (QueryValidationError, "validation"),
        (NotFoundError, "not_found"),
        (ProjectionError, "projection"),
        (ReadModelError, "read_model"),
    ],
)
def test_every_query_error_is_a_query_error_with_its_code(
    error_type: type[QueryError], code: str
) -> None:
    assert issubclass(error_type, QueryError)
    assert not issubclass(error_type, CommandError)
    assert error_type.code == code


def test_a_command_error_reads_as_its_message() -> None:
    error = ConcurrencyError("stream acme/user-1: expected version 3, actual 4")
    assert str(error) == "stream acme/user-1: expected version 3, actual 4"
    assert error.message == str(error)


def test_a_domain_error_carries_its_reason_for_callers_to_test() -> None:
    error = DomainError("tenant 'acme' is deleted", reason="tenant_deleted")
    assert error.reason == "tenant_deleted"
    assert str(error) == "tenant 'acme' is deleted"


def test_a_domain_error_reason_is_optional() -> None:
    assert DomainError("no").reason is None


def test_unknown_event_type_names_type_and_version() -> None:
    error = UnknownEventTypeError("Foo", 3)
    assert str(error) == "unknown event type 'Foo' (version 3)"
    assert (error.event_type, error.event_version) == ("Foo", 3)
    assert isinstance(error, CommandValidationError)


def test_unknown_event_type_without_a_version_names_the_type_only() -> None:
    error = UnknownEventTypeError("Foo")
    assert str(error) == "unknown event type 'Foo'"
    assert error.event_version is None


@pytest.mark.parametrize(
    "error",
    [
        DomainError("tenant 'acme' is deleted", reason="tenant_deleted"),
        UnknownEventTypeError("Foo", 3, detail="newer than the current version 2"),
        CommandValidationError("invalid RenameTenant: name: name must not be empty"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling_and_copying_with_their_attributes(error: CommandError) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert vars(clone) == vars(error)


# --- validation_error_from_pydantic ---------------------------------------------------------


class _Rename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=200)]
    count: int = 0


def _pydantic_error(data: dict[str, object]) -> pydantic.ValidationError:
    try:
        _Rename.model_validate(data)
    except pydantic.ValidationError as e:
        return e
    raise AssertionError("expected a validation error")


def test_a_pydantic_error_becomes_one_readable_command_validation_error() -> None:
    error = validation_error_from_pydantic(_pydantic_error({"name": "x" * 201}), "RenameTenant")
    assert isinstance(error, CommandValidationError)
    assert str(error).startswith(
        "invalid RenameTenant: name: String should have at most 200 characters (got 'xxx"
    )


def test_every_problem_is_listed_separated_by_semicolons() -> None:
    error = validation_error_from_pydantic(
        _pydantic_error({"count": "many", "extra": True}), "RenameTenant"
    )
    assert str(error) == (
        "invalid RenameTenant: name: Field required;"
        " count: Input should be a valid integer, unable to parse string as an integer"
        " (got 'many'); extra: Extra inputs are not permitted (got True)"
    )


def test_a_long_offending_value_is_cut_short_in_the_message() -> None:
    error = validation_error_from_pydantic(_pydantic_error({"name": "x" * 10_000}), "R")
    assert len(str(error)) < 200
    assert str(error).endswith("…)")


def test_shown_values_are_reprs_cut_to_a_readable_length() -> None:
    assert errors.shown("acme") == "'acme'"
    assert len(errors.shown("a" * 1000)) == 60
