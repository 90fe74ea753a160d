"""The command policy (domain/authorization.py): every command type by every kind of principal,
and the compact form principals are given in (``--as``, ``ACCI_PRINCIPAL``)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from temporalio.exceptions import ApplicationError

from acci.activities.errors import application_error, command_error
from acci.domain import COMMAND_TYPES, parse_command
from acci.domain.authorization import (
    SYSTEM_ONLY,
    authorize,
    check_audit_reader,
    check_sender,
    required_roles,
)
from acci.domain.command import Command
from acci.domain.errors import AuthorizationError, CommandError
from acci.domain.principals import (
    SYSTEM_ADMIN,
    Principal,
    PrincipalFormatError,
    parse_principal,
)
from acci.domain.user import User, UserState, UserStatus

ACME = "acme"


def user(*roles: str, id: str = "ann", tenant: str = ACME) -> Principal:
    return Principal(id=id, tenant_id=tenant, roles=frozenset(roles))


ADMIN_OF_SYSTEM = Principal(id="ops", roles=frozenset({SYSTEM_ADMIN}))
SERVICE = Principal.service("backups")
BARE_SERVICE = Principal(id="job", kind="service")  # no tenant, no roles: not the system
SYSTEMLESS = Principal(id="nobody")  # no tenant, no role: may do nothing
OWNER, ADMIN, MEMBER, VIEWER = user("owner"), user("admin"), user("member"), user("viewer")
OTHER_TENANT_OWNER = user("owner", "admin", tenant="globex")
TENANT_SERVICE = Principal(id="sync", tenant_id=ACME, roles=frozenset({"admin"}), kind="service")

# One command of each built-in type, sent in ACME; payloads that touch no owner role.
PAYLOADS: dict[str, dict[str, Any]] = {
    "CreateTenant": {"name": "Acme"},
    "RenameTenant": {"name": "Acme 2"},
    "UpdateTenantSettings": {"settings": {"max_users": 5}},
    "SuspendTenant": {"reason": "audit"},
    "ReactivateTenant": {},
    "DeleteTenant": {},
    "RegisterUser": {"user_id": "bob", "email": "bob@acme.example", "display_name": "Bob"},
    "ChangeUserEmail": {"user_id": "bob", "email": "b@acme.example"},
    "AssignRole": {"user_id": "bob", "role": "admin"},
    "RevokeRole": {"user_id": "bob", "role": "member"},
    "DeactivateUser": {"user_id": "bob"},
}
TENANT_COMMANDS = {"RenameTenant", "UpdateTenantSettings"}
USER_COMMANDS = {"RegisterUser", "ChangeUserEmail", "AssignRole", "RevokeRole", "DeactivateUser"}


def built(command_type: str, tenant: str = ACME, **payload: Any) -> Command:
    data = {**PAYLOADS[command_type], **payload}
    if "tenant_id" in COMMAND_TYPES[command_type].model_fields:
        data.setdefault("tenant_id", tenant)
    return parse_command(command_type, data)


def allowed(principal: Principal | None, command: Command, tenant: str = ACME) -> bool:
    try:
        authorize(principal, tenant, command)
    except AuthorizationError:
        return False
    return True


def test_every_built_in_command_type_is_covered_here() -> None:
    built_in = {name for name in COMMAND_TYPES if name in PAYLOADS}
    assert built_in == set(PAYLOADS) == SYSTEM_ONLY | TENANT_COMMANDS | USER_COMMANDS


# Expected: who may send each built-in command type in ACME.
EXPECTED: dict[str, set[str]] = {
    **{t: set() for t in SYSTEM_ONLY},
    **{t: {"owner", "admin", "tenant service"} for t in TENANT_COMMANDS | USER_COMMANDS},
}
PRINCIPALS: dict[str, Principal | None] = {
    "owner": OWNER,
    "admin": ADMIN,
    "member": MEMBER,
    "viewer": VIEWER,
    "other tenant's owner": OTHER_TENANT_OWNER,
    "no role, no tenant": SYSTEMLESS,
    "tenant service": TENANT_SERVICE,
    "none": None,
}


@pytest.mark.parametrize("command_type", sorted(PAYLOADS))
@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_tenant_principals_may_send_what_their_roles_allow_in_their_own_tenant(
    command_type: str, who: str
) -> None:
    assert allowed(PRINCIPALS[who], built(command_type)) == (who in EXPECTED[command_type])


@pytest.mark.parametrize("command_type", sorted(PAYLOADS))
@pytest.mark.parametrize("system", [ADMIN_OF_SYSTEM, SERVICE], ids=str)
def test_system_administrators_and_services_may_send_everything_anywhere(
    command_type: str, system: Principal
) -> None:
    for tenant in (ACME, "globex"):
        assert authorize(system, tenant, built(command_type, tenant)) is system


def test_a_service_without_the_system_role_is_not_the_system() -> None:
    # One notion of "the system" for commands, queries and the audit log: the system_admin
    # role (Principal.service and `--as service/NAME` give it).
    for command_type in ("CreateTenant", "RenameTenant"):
        with pytest.raises(AuthorizationError, match="must be a system administrator"):
            authorize(BARE_SERVICE, ACME, built(command_type))


def test_only_system_administrators_manage_tenants_even_their_owners_are_refused() -> None:
    for command_type in sorted(SYSTEM_ONLY):
        with pytest.raises(AuthorizationError, match="only system administrators"):
            authorize(OWNER, ACME, built(command_type))


def test_a_command_without_a_principal_is_denied_not_run_as_anyone() -> None:
    with pytest.raises(AuthorizationError, match="names no principal"):
        authorize(None, ACME, built("RenameTenant"))
    with pytest.raises(AuthorizationError, match="names no principal"):
        check_sender(None, ACME, "AnythingAtAll")


def test_nobody_acts_on_another_tenant_and_the_message_says_so() -> None:
    with pytest.raises(AuthorizationError, match="acts only in its own tenant") as refused:
        authorize(OWNER, "globex", built("RenameTenant", tenant="globex"))
    assert "ann@acme" in str(refused.value) and "'globex'" in str(refused.value)
    # A tenant command naming another tenant than the one it is sent in is refused too.
    with pytest.raises(AuthorizationError, match="own tenant"):
        authorize(OWNER, ACME, built("RenameTenant", tenant="globex"))


def test_only_an_owner_grants_or_takes_the_owner_role() -> None:
    for command in (
        built("AssignRole", role="owner"),
        built("RevokeRole", role="owner"),
        built("RegisterUser", roles=["owner", "member"]),
    ):
        assert allowed(OWNER, command)
        assert allowed(ADMIN_OF_SYSTEM, command)
        with pytest.raises(AuthorizationError, match="only an owner may"):
            authorize(ADMIN, ACME, command)
        assert not allowed(MEMBER, command)


@pytest.mark.parametrize("command_type", ["DeactivateUser", "ChangeUserEmail", "RevokeRole"])
def test_only_an_owner_changes_an_owners_account_once_the_user_is_loaded(
    command_type: str,
) -> None:
    command = built(command_type, role="admin") if command_type == "RevokeRole" else None
    command = command or built(command_type)
    an_owner = UserState(status=UserStatus.ACTIVE, roles=frozenset({"owner", "admin"}))
    an_admin = UserState(status=UserStatus.ACTIVE, roles=frozenset({"admin"}))
    # The policy lets an admin manage users, without knowing whom.
    assert allowed(ADMIN, command)
    with pytest.raises(AuthorizationError, match="the user is an owner of the tenant"):
        User.authorize_on_state(command, an_owner, ADMIN)
    for sender in (OWNER, ADMIN_OF_SYSTEM):
        User.authorize_on_state(command, an_owner, sender)
    User.authorize_on_state(command, an_admin, ADMIN)
    # Assigning an owner another role changes nothing they hold.
    User.authorize_on_state(built("AssignRole", role="member"), an_owner, ADMIN)


def test_members_change_their_own_email_only_and_viewers_change_nothing() -> None:
    own = built("ChangeUserEmail", user_id="ann")
    assert allowed(MEMBER, own)
    assert not allowed(VIEWER, own)
    with pytest.raises(AuthorizationError, match=r"needs one of admin, owner"):
        authorize(MEMBER, ACME, built("ChangeUserEmail", user_id="bob"))
    # Self-service is only for the email: a member does not deactivate or promote themselves.
    assert not allowed(MEMBER, built("DeactivateUser", user_id="ann"))
    assert not allowed(MEMBER, built("AssignRole", user_id="ann", role="admin"))


class _AppCommand(Command):
    command_type: ClassVar[str] = "ShipParcel"
    parcel_id: str = "p-1"

    @property
    def aggregate_id(self) -> str:
        return self.parcel_id


class _OpenToMembers(_AppCommand):
    command_type: ClassVar[str] = "TrackParcel"
    allowed_roles: ClassVar[frozenset[str]] = frozenset({"owner", "admin", "member"})


class _ClaimsSystemPowers(_AppCommand):
    command_type: ClassVar[str] = "SeizeParcel"
    allowed_roles: ClassVar[frozenset[str]] = frozenset({SYSTEM_ADMIN, "viewer"})


def test_an_applications_command_defaults_to_the_tenants_owners_and_admins() -> None:
    command = _AppCommand()
    assert required_roles(command) == {"owner", "admin"}
    assert [allowed(p, command) for p in (OWNER, ADMIN, MEMBER, VIEWER)] == [
        True,
        True,
        False,
        False,
    ]
    assert allowed(ADMIN_OF_SYSTEM, command) and allowed(SERVICE, command)
    assert not allowed(OTHER_TENANT_OWNER, command)


def test_an_application_opens_its_commands_to_the_roles_it_declares_and_no_others() -> None:
    tracked = _OpenToMembers()
    assert [allowed(p, tracked) for p in (OWNER, ADMIN, MEMBER, VIEWER)] == [
        True,
        True,
        True,
        False,
    ]
    # A declared system role counts for nothing: an application cannot hand out system powers.
    seized = _ClaimsSystemPowers()
    assert required_roles(seized) == {"viewer"}
    assert allowed(VIEWER, seized) and not allowed(ADMIN, seized)
    assert not allowed(OTHER_TENANT_OWNER, seized)


def test_the_invoicing_example_lets_members_invoice_and_viewers_not() -> None:
    from invoicing.domain import IssueInvoice

    issue = IssueInvoice(invoice_id="inv-1", customer="Bob")
    assert allowed(MEMBER, issue) and not allowed(VIEWER, issue)


@pytest.mark.parametrize(
    ("reader", "tenant", "may"),
    [
        (ADMIN_OF_SYSTEM, None, True),
        (ADMIN_OF_SYSTEM, ACME, True),
        (SERVICE, None, True),
        (OWNER, ACME, True),
        (ADMIN, ACME, True),
        (MEMBER, ACME, False),
        (VIEWER, ACME, False),
        (OWNER, "globex", False),
        (OWNER, None, False),
        (SYSTEMLESS, ACME, False),
    ],
)
def test_who_may_read_the_audit_log(reader: Principal, tenant: str | None, may: bool) -> None:
    if may:
        check_audit_reader(reader, tenant)
    else:
        with pytest.raises(AuthorizationError):
            check_audit_reader(reader, tenant)


def test_a_denial_is_a_non_retryable_application_error_and_back() -> None:
    error = application_error(AuthorizationError("eve@acme may not send RenameTenant"))
    assert (error.type, error.non_retryable) == ("AuthorizationError", True)
    assert error.details[0] == {"code": "authorization", "error": "AuthorizationError"}
    back = command_error(ApplicationError(error.message, *error.details, type=error.type))
    assert isinstance(back, AuthorizationError) and isinstance(back, CommandError)
    assert back.code == "authorization" and "eve@acme" in str(back)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ann@acme:admin,member", user("admin", "member")),
        (" ann@acme:admin, member ", user("admin", "member")),
        ("ann@acme", user()),
        ("ops:system_admin", ADMIN_OF_SYSTEM),
        ("service/backups", SERVICE),
        ("ann@example.com@acme:member", user("member", id="ann@example.com")),
        ("service/sync@acme:admin", TENANT_SERVICE),
        ("cli:system_admin", Principal(id="cli", roles=frozenset({SYSTEM_ADMIN}))),
    ],
)
def test_the_compact_form_names_a_principal_and_round_trips(text: str, expected: Principal) -> None:
    parsed = parse_principal(text)
    assert parsed == expected
    assert parse_principal(parsed.spec()) == parsed


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "principal id ''"),
        ("ann smith@acme:admin", "principal id 'ann smith'"),
        ("ann@acme:boss", "unknown role(s) 'boss'"),
        ("ann@ac.me:admin", "tenant id 'ac.me'"),
        ("ops:admin", "tenant roles (admin) need @TENANT"),
        ("ann@acme:system_admin", "system_admin belongs to system principals"),
        ("service/:system_admin", "principal id ''"),
        ("ann@", "no tenant after '@'"),
        ("ann@:admin", "no tenant after '@'"),
        ("ann@acme:", "an empty role after ':' or ','"),
        ("ann@acme:admin,", "an empty role after ':' or ','"),
        ("ann@acme:admin,,member", "an empty role after ':' or ','"),
        ("ops:", "an empty role after ':' or ','"),
    ],
)
def test_a_bad_compact_form_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(PrincipalFormatError) as refused:
        parse_principal(text)
    assert says in str(refused.value)


def test_the_actor_recorded_on_events_names_id_tenant_roles_and_kind() -> None:
    assert user("member", "admin").actor() == {
        "id": "ann",
        "tenant_id": ACME,
        "roles": ["admin", "member"],
        "kind": "user",
    }
    assert SERVICE.actor() == {
        "id": "backups",
        "tenant_id": None,
        "roles": [SYSTEM_ADMIN],
        "kind": "service",
    }
