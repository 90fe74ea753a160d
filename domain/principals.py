"""Who sends a command or asks a query: a principal, and what its roles let it reach.

A principal is either a tenant's user (``tenant_id`` set, roles among the tenant roles of
``domain/roles.py``) or a system principal (``tenant_id`` None): a system administrator, or a
service that runs jobs. How a principal was authenticated is not the domain's concern: the
process that builds one (the CLI from its settings, a gateway from a verified token) vouches for
it.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from acci.domain.errors import shown
from acci.domain.identifiers import TenantId
from acci.domain.roles import ROLES

SYSTEM_ADMIN: Final = "system_admin"
"""The role that may act on every tenant and manage tenants themselves."""

PRINCIPAL_ROLES: Final = frozenset({*ROLES, SYSTEM_ADMIN})

_PRINCIPAL_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")


def _check_principal_id(value: str) -> str:
    if not _PRINCIPAL_ID.fullmatch(value):
        raise ValueError(
            f"principal id {shown(value)} must be 1-128 characters of A-Z a-z 0-9 _ . : @ + -,"
            " starting with a letter or digit"
        )
    return value


def _check_roles(value: frozenset[str]) -> frozenset[str]:
    unknown = sorted(value - PRINCIPAL_ROLES)
    if unknown:
        raise ValueError(
            f"unknown role(s) {', '.join(map(shown, unknown))}; known roles:"
            f" {', '.join(sorted(PRINCIPAL_ROLES))}"
        )
    return value


PrincipalId = Annotated[str, Strict(), AfterValidator(_check_principal_id)]


class Principal(BaseModel):
    """A user of one tenant, or a system principal (no tenant)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: PrincipalId
    tenant_id: TenantId | None = None
    roles: Annotated[frozenset[str], AfterValidator(_check_roles)] = Field(
        default_factory=frozenset
    )
    kind: Literal["user", "service"] = "user"

    @classmethod
    def service(cls, name: str) -> Principal:
        """The principal a scheduled or system job acts as: a system administrator."""
        return cls(id=name, roles=frozenset({SYSTEM_ADMIN}), kind="service")

    @property
    def is_system_admin(self) -> bool:
        """May act on every tenant, and on tenants themselves."""
        return self.tenant_id is None and SYSTEM_ADMIN in self.roles

    def may_see(self, tenant_id: str) -> bool:
        """Whether this principal may read ``tenant_id``'s data."""
        return self.is_system_admin or self.tenant_id == tenant_id

    def describe(self) -> str:
        """``id@tenant`` (or ``id@system``), for messages and the audit log."""
        return f"{self.id}@{self.tenant_id or 'system'}"
