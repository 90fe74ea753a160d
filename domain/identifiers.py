"""Tenant and aggregate id rules, shared by commands, aggregates and the event store."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, Strict

from acci.domain.errors import CommandValidationError, shown

MAX_TENANT_ID_LENGTH: Final = 64
MAX_AGGREGATE_ID_LENGTH: Final = 128

# Tenant ids become RabbitMQ routing-key segments and partition names: no dots.
# The patterns are written for both Python's re (with fullmatch) and PostgreSQL's `~`.
TENANT_ID_PATTERN: Final = rf"^[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_TENANT_ID_LENGTH - 1}}}$"
AGGREGATE_ID_PATTERN: Final = rf"^[A-Za-z0-9][A-Za-z0-9_.:@-]{{0,{MAX_AGGREGATE_ID_LENGTH - 1}}}$"

# Aggregate and event type names become routing-key segments too: no dots, no spaces.
TYPE_NAME_PATTERN: Final = r"^[A-Z][A-Za-z0-9]{0,99}$"

_TENANT_ID: Final = re.compile(TENANT_ID_PATTERN)
_AGGREGATE_ID: Final = re.compile(AGGREGATE_ID_PATTERN)


def _check_tenant_id(value: str) -> str:
    # fullmatch, not match: `$` alone would accept a trailing newline.
    if not _TENANT_ID.fullmatch(value):
        raise ValueError(
            f"tenant id {shown(value)} must be 1-{MAX_TENANT_ID_LENGTH} characters of"
            " A-Z a-z 0-9 _ -, starting with a letter or digit"
        )
    return value


def _check_aggregate_id(value: str) -> str:
    if not _AGGREGATE_ID.fullmatch(value):
        raise ValueError(
            f"aggregate id {shown(value)} must be 1-{MAX_AGGREGATE_ID_LENGTH} characters of"
            " A-Z a-z 0-9 _ . : @ -, starting with a letter or digit"
        )
    return value


TenantId = Annotated[str, Strict(), AfterValidator(_check_tenant_id)]
AggregateId = Annotated[str, Strict(), AfterValidator(_check_aggregate_id)]


def validate_tenant_id(value: object) -> str:
    """``value`` if it is a valid tenant id, else ``CommandValidationError``."""
    if not isinstance(value, str):
        raise CommandValidationError(f"tenant id must be a string, got {shown(value)}")
    try:
        return _check_tenant_id(value)
    except ValueError as e:
        raise CommandValidationError(str(e)) from e


def validate_aggregate_id(value: object) -> str:
    """``value`` if it is a valid aggregate id, else ``CommandValidationError``."""
    if not isinstance(value, str):
        raise CommandValidationError(f"aggregate id must be a string, got {shown(value)}")
    try:
        return _check_aggregate_id(value)
    except ValueError as e:
        raise CommandValidationError(str(e)) from e
