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

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError

from acci.domain.errors import describe_problems, shown
from acci.domain.identifiers import TenantId
from acci.domain.roles import ROLES

SYSTEM_ADMIN: Final = "system_admin"
"""The role that may act on every tenant and manage tenants themselves."""

PRINCIPAL_ROLES: Final = frozenset({*ROLES, SYSTEM_ADMIN})

SERVICE_PREFIX: Final = "service/"
PRINCIPAL_FORMAT: Final = "[service/]ID[@TENANT][:ROLE[,ROLE...]]"
"""The compact form of a principal (``ACCI_PRINCIPAL``, ``--as``)."""

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

    def actor(self) -> dict[str, object]:
        """The principal as recorded in each event's metadata (key ``actor``) and in the audit
        log: ``{"id", "tenant_id" (None: system), "roles" (sorted), "kind"}``."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "roles": sorted(self.roles),
            "kind": self.kind,
        }

    def spec(self) -> str:
        """The principal in the form ``parse_principal`` reads (``ann@acme:admin,member``)."""
        text = f"{SERVICE_PREFIX}{self.id}" if self.kind == "service" else self.id
        if self.tenant_id is not None:
            text += f"@{self.tenant_id}"
        return f"{text}:{','.join(sorted(self.roles))}" if self.roles else text


class PrincipalFormatError(ValueError):
    """A principal's compact form that does not parse, or names no principal that can exist."""


def parse_principal(text: str) -> Principal:
    """The principal ``text`` names in the form ``[service/]ID[@TENANT][:ROLE[,ROLE...]]``.

    ``ann@acme:admin,member`` is user ann of tenant acme with roles admin and member;
    ``ops:system_admin`` is a system administrator; ``service/backups`` is a service principal
    (a job), which acts as the system. The roles follow the last ``:`` and the tenant the last
    ``@`` before them, so an id may hold ``@`` (``ann@example.com@acme:member``). Tenant roles
    need a tenant, and ``system_admin`` needs none: either mistake is refused here, with the
    reason, rather than building a principal that may do nothing.
    """
    body = text.strip()
    kind: Literal["user", "service"] = "user"
    if body.startswith(SERVICE_PREFIX):
        kind, body = "service", body[len(SERVICE_PREFIX) :]
    head, _, role_text = body.rpartition(":") if ":" in body else (body, "", "")
    ident, at, tenant = head.rpartition("@") if "@" in head else (head, "", "")
    if at and not tenant.strip():  # "ann@": a tenant forgotten, not a system principal
        raise PrincipalFormatError(f"{shown(text)}: no tenant after '@' ({PRINCIPAL_FORMAT})")
    listed = [r.strip() for r in role_text.split(",")] if ":" in body else []
    if "" in listed:  # "ann@acme:" or "ann@acme:admin,": a role left out, not "no roles"
        raise PrincipalFormatError(
            f"{shown(text)}: an empty role after ':' or ',' ({PRINCIPAL_FORMAT})"
        )
    roles = frozenset(listed)
    if kind == "service" and not tenant and not roles:
        roles = frozenset({SYSTEM_ADMIN})
    if tenant and SYSTEM_ADMIN in roles:
        raise PrincipalFormatError(
            f"{shown(text)}: {SYSTEM_ADMIN} belongs to system principals, which name no @TENANT"
        )
    if not tenant and roles - {SYSTEM_ADMIN}:
        raise PrincipalFormatError(
            f"{shown(text)}: tenant roles ({', '.join(sorted(roles - {SYSTEM_ADMIN}))}) need"
            f" @TENANT; a system principal has the role {SYSTEM_ADMIN}"
        )
    try:
        return Principal(id=ident, tenant_id=tenant or None, roles=roles, kind=kind)
    except ValidationError as e:
        raise PrincipalFormatError(
            f"{shown(text)} is not a principal ({PRINCIPAL_FORMAT}): {describe_problems(e)}"
        ) from None
