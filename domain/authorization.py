"""Who may send which command to which tenant: the command policy, pure and checked first.

The rules, in order (the first that answers decides):

1. A command without a principal is refused: nothing runs as an unnamed sender.
2. System administrators (role ``system_admin`` and no tenant: people, and the services that
   run the system's jobs) may send every command to every tenant.
3. A principal with no tenant that is neither may send nothing.
4. Nobody else acts on a tenant other than their own (the tenant the command is sent in, and
   the tenant a tenant command names, must both be the principal's).
5. Only system administrators create, suspend, reactivate or delete tenants
   (``SYSTEM_ONLY``).
6. The built-in commands (``BUILT_IN``): a tenant's owners and admins rename it, change its
   settings and manage its users; only an owner grants or takes the owner role (registering
   a user as owner included), so an admin cannot raise anyone, themselves included, above
   admin, and only an owner changes an owner's account (deactivates them, changes their
   email address, takes a role from them; ``User.authorize_on_state``, once the user is loaded).
   Members may change their own email address (``ChangeUserEmail`` of the user whose
   id is theirs) and nothing else of the tenancy application; viewers may change nothing.
7. Any other command type (an installed application's): the roles its command class declares
   in ``allowed_roles`` (a ``ClassVar[frozenset[str]]`` of tenant roles, e.g.
   ``frozenset({"owner", "admin", "member"})``), else ``DEFAULT_ROLES``: the target tenant's
   owners and admins. An application that declares nothing is therefore safe by default, and
   opens its commands to members explicitly.

The policy sees the command, never the aggregate's state: it is checked before anything is
loaded, so a refused command costs no read and reveals nothing about the target. A rule that
depends on the target (an owner's account) is the aggregate's ``authorize_on_state``, which the
command handler calls with the loaded state before deciding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from acci.domain.command import Command
from acci.domain.errors import AuthorizationError
from acci.domain.principals import SYSTEM_ADMIN, Principal
from acci.domain.roles import OWNER, ROLES

MANAGERS: Final = frozenset({OWNER, "admin"})
"""The roles that manage a tenant: its settings, its name and its users."""

DEFAULT_ROLES: Final = MANAGERS
"""Who may send a command type no rule names and whose class declares no ``allowed_roles``."""

SYSTEM_ONLY: Final = frozenset(
    {"CreateTenant", "SuspendTenant", "ReactivateTenant", "DeleteTenant"}
)
"""Tenant lifecycle: system administrators only."""

BUILT_IN: Final[Mapping[str, frozenset[str]]] = {
    "RenameTenant": MANAGERS,
    "UpdateTenantSettings": MANAGERS,
    "RegisterUser": MANAGERS,
    "ChangeUserEmail": MANAGERS,
    "AssignRole": MANAGERS,
    "RevokeRole": MANAGERS,
    "DeactivateUser": MANAGERS,
}
"""The tenancy application's commands: the tenant roles that may send each."""

SELF_SERVICE: Final[Mapping[str, frozenset[str]]] = {"ChangeUserEmail": frozenset({"member"})}
"""Commands a user may send about themselves (the command's user id is the principal's id)
with fewer roles than ``BUILT_IN`` asks."""

ALLOWED_ROLES_ATTRIBUTE: Final = "allowed_roles"


def check_sender(principal: Principal | None, tenant_id: str, command_type: str) -> Principal:
    """The principal, if it may act in ``tenant_id`` at all (rules 1-4); else
    ``AuthorizationError``. Checked before the command is even parsed."""
    if principal is None:
        raise AuthorizationError(
            f"{command_type} names no principal: every command must say who sends it"
        )
    if principal.is_system_admin:
        return principal
    who = principal.describe()
    if principal.tenant_id is None:
        raise AuthorizationError(
            f"{who} may not send {command_type}: a principal without a tenant must be a system"
            f" administrator (role {SYSTEM_ADMIN})"
        )
    if principal.tenant_id != tenant_id:
        raise AuthorizationError(
            f"{who} may not send {command_type} to tenant {tenant_id!r}: a principal acts only"
            " in its own tenant"
        )
    return principal


def authorize(principal: Principal | None, tenant_id: str, command: Command) -> Principal:
    """The principal, if it may send ``command`` in ``tenant_id``; else ``AuthorizationError``
    naming the rule that refused it."""
    command_type = command.command_type
    sender = check_sender(principal, tenant_id, command_type)
    if sender.is_system_admin:
        return sender
    named = getattr(command, "tenant_id", tenant_id)
    if named != tenant_id:  # a tenant command naming another tenant than its envelope
        check_sender(sender, named, command_type)
    who = sender.describe()
    if command_type in SYSTEM_ONLY:
        raise AuthorizationError(
            f"{who} may not send {command_type}: only system administrators create, suspend,"
            " reactivate or delete tenants"
        )
    needed = required_roles(command)
    if command_type in SELF_SERVICE and command.aggregate_id == sender.id:
        needed = needed | SELF_SERVICE[command_type]
    if not sender.roles & needed:
        raise AuthorizationError(
            f"{who} (roles: {_listed(sender.roles)}) may not send {command_type}: it needs one"
            f" of {_listed(needed)} in tenant {tenant_id!r}"
        )
    if _touches_owner(command) and OWNER not in sender.roles:
        raise AuthorizationError(
            f"{who} may not send {command_type} granting or taking the {OWNER} role: only"
            f" an {OWNER} may"
        )
    return sender


def required_roles(command: Command) -> frozenset[str]:
    """The tenant roles any one of which lets a principal of the tenant send ``command``
    (empty: system administrators only)."""
    command_type = command.command_type
    if command_type in SYSTEM_ONLY:
        return frozenset()
    if command_type in BUILT_IN:
        return BUILT_IN[command_type]
    declared = getattr(type(command), ALLOWED_ROLES_ATTRIBUTE, None)
    if declared is None:
        return DEFAULT_ROLES
    # Only tenant roles count: an application cannot hand out system powers by naming them.
    return frozenset(role for role in declared if role in ROLES)


def _touches_owner(command: Command) -> bool:
    """Whether ``command`` grants or takes the owner role (the tenancy application's)."""
    if command.command_type in ("AssignRole", "RevokeRole"):
        return getattr(command, "role", None) == OWNER
    if command.command_type == "RegisterUser":
        return OWNER in getattr(command, "roles", ())
    return False


def _listed(roles: frozenset[str]) -> str:
    return ", ".join(sorted(roles)) or "none"


def check_audit_reader(principal: Principal, tenant_id: str | None) -> None:
    """Whether ``principal`` may read the audit log of ``tenant_id`` (None: of every tenant);
    else ``AuthorizationError``.

    Every tenant's log: system administrators. One tenant's: those, and that
    tenant's owners and admins (the log names who tried what, with the reasons refusals gave,
    which members and viewers are not shown).
    """
    if principal.is_system_admin:
        return
    who = principal.describe()
    if tenant_id is None:
        raise AuthorizationError(
            f"{who} may not read every tenant's audit log (a system administrator may); give"
            " --tenant"
        )
    if principal.tenant_id != tenant_id:
        raise AuthorizationError(f"{who} may not read tenant {tenant_id!r}'s audit log")
    if not principal.roles & MANAGERS:
        raise AuthorizationError(
            f"{who} (roles: {_listed(principal.roles)}) may not read the audit log: it needs"
            f" one of {_listed(MANAGERS)}"
        )
