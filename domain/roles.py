"""User roles: the names the system knows, and the shape any stored role name has."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, Strict

from acci.domain.errors import shown

OWNER: Final = "owner"
"""The role that owns a tenant: only an owner grants it, takes it, or changes an owner's account."""

ROLES: Final = frozenset({OWNER, "admin", "member", "viewer"})

_ROLE_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _check_role_name(value: str) -> str:
    if not _ROLE_NAME.fullmatch(value):
        raise ValueError(f"role name {shown(value)} must be 1-40 characters of a-z 0-9 _")
    return value


def _check_role(value: str) -> str:
    if value not in ROLES:
        raise ValueError(f"unknown role {shown(value)}; known roles: {', '.join(sorted(ROLES))}")
    return value


Role = Annotated[str, Strict(), AfterValidator(_check_role)]
"""A role a command may grant: one of ``ROLES``."""

# Events only check the shape: a role retired from ROLES must not make old events unreadable.
RoleName = Annotated[str, Strict(), AfterValidator(_check_role_name)]
"""A role name as stored in events."""
