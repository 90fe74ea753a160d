"""The Tenant aggregate's commands and invariants, given/when/then."""

from __future__ import annotations

import pytest

from acci.domain import CommandValidationError, DomainError, Tenant, UnknownEventTypeError
from acci.domain.command import Command
from acci.domain.tenant import (
    CreateTenant,
    DeleteTenant,
    ReactivateTenant,
    RenameTenant,
    SuspendTenant,
    TenantCreated,
    TenantDeleted,
    TenantReactivated,
    TenantRenamed,
    TenantSettings,
    TenantSettingsUpdated,
    TenantState,
    TenantStatus,
    TenantSuspended,
    UpdateTenantSettings,
    ensure_tenant_active,
)
from acci.domain.user import RegisterUser, RoleAssigned
from tests.unit.given_when_then import given

T = "acme"
DEFAULTS = TenantSettings()
CUSTOM = TenantSettings(
    max_users=5, locale="de-DE", timezone="Europe/Berlin", features={"sso": True}
)

CREATED = TenantCreated(name="Acme", settings=DEFAULTS)
SUSPENDED = TenantSuspended(reason="unpaid invoice")
DELETED = TenantDeleted(reason=None)

EVERY_COMMAND: list[Command] = [
    CreateTenant(tenant_id=T, name="Acme"),
    RenameTenant(tenant_id=T, name="Acme Two"),
    UpdateTenantSettings(tenant_id=T, settings=CUSTOM),
    SuspendTenant(tenant_id=T, reason="unpaid"),
    ReactivateTenant(tenant_id=T),
    DeleteTenant(tenant_id=T, reason=None),
]
EVERY_COMMAND_BUT_CREATE = EVERY_COMMAND[1:]


def _ids(commands: list[Command]) -> list[str]:
    return [c.command_type for c in commands]


# --- CreateTenant ---------------------------------------------------------------------------


def test_creating_a_tenant_records_its_name_and_settings() -> None:
    given([]).when(CreateTenant(tenant_id=T, name="Acme", settings=CUSTOM)).then(
        [TenantCreated(name="Acme", settings=CUSTOM)]
    )


def test_creating_a_tenant_without_settings_uses_the_defaults() -> None:
    given([]).when(CreateTenant(tenant_id=T, name="Acme")).then(
        [TenantCreated(name="Acme", settings=DEFAULTS)]
    )


def test_a_created_tenant_is_active_with_its_name_and_settings() -> None:
    tenant = (
        given([])
        .when(CreateTenant(tenant_id=T, name="Acme", settings=CUSTOM))
        .then([TenantCreated(name="Acme", settings=CUSTOM)])
    )
    assert tenant.state == TenantState(status=TenantStatus.ACTIVE, name="Acme", settings=CUSTOM)


@pytest.mark.parametrize("history", [[CREATED], [CREATED, SUSPENDED]], ids=["active", "suspended"])
def test_creating_an_existing_tenant_is_rejected_as_already_exists(
    history: list[TenantCreated | TenantSuspended],
) -> None:
    error = (
        given(history)
        .when(CreateTenant(tenant_id=T, name="Acme"))
        .then_raises(DomainError, reason="already_exists")
    )
    assert "'acme'" in str(error)


def test_creating_a_deleted_tenant_again_is_rejected_as_deleted() -> None:
    given([CREATED, DELETED]).when(CreateTenant(tenant_id=T, name="Acme")).then_raises(
        DomainError, reason="tenant_deleted"
    )


# --- RenameTenant ---------------------------------------------------------------------------


def test_renaming_a_tenant_records_the_old_and_the_new_name() -> None:
    tenant = (
        given([CREATED])
        .when(RenameTenant(tenant_id=T, name="Acme Two"))
        .then([TenantRenamed(old_name="Acme", new_name="Acme Two")])
    )
    assert tenant.state.name == "Acme Two"


def test_renaming_a_tenant_to_its_current_name_records_nothing() -> None:
    given([CREATED]).when(RenameTenant(tenant_id=T, name="Acme")).then_nothing_happens()


def test_renaming_to_the_current_name_with_surrounding_spaces_records_nothing() -> None:
    given([CREATED]).when(RenameTenant(tenant_id=T, name="  Acme\t")).then_nothing_happens()


def test_renaming_only_the_letter_case_is_a_real_rename() -> None:
    given([CREATED]).when(RenameTenant(tenant_id=T, name="ACME")).then(
        [TenantRenamed(old_name="Acme", new_name="ACME")]
    )


def test_renaming_a_suspended_tenant_is_allowed() -> None:
    given([CREATED, SUSPENDED]).when(RenameTenant(tenant_id=T, name="Acme Two")).then(
        [TenantRenamed(old_name="Acme", new_name="Acme Two")]
    )


def test_a_rename_after_a_rename_starts_from_the_latest_name() -> None:
    history = [CREATED, TenantRenamed(old_name="Acme", new_name="Acme Two")]
    given(history).when(RenameTenant(tenant_id=T, name="Acme Three")).then(
        [TenantRenamed(old_name="Acme Two", new_name="Acme Three")]
    )


# --- UpdateTenantSettings -------------------------------------------------------------------


def test_updating_settings_records_the_new_settings() -> None:
    tenant = (
        given([CREATED])
        .when(UpdateTenantSettings(tenant_id=T, settings=CUSTOM))
        .then([TenantSettingsUpdated(settings=CUSTOM)])
    )
    assert tenant.state.settings == CUSTOM


def test_updating_settings_to_identical_settings_records_nothing() -> None:
    same = TenantSettings(max_users=100, locale="en", timezone="UTC", features={})
    given([CREATED]).when(UpdateTenantSettings(tenant_id=T, settings=same)).then_nothing_happens()


def test_updating_settings_of_a_suspended_tenant_is_allowed() -> None:
    given([CREATED, SUSPENDED]).when(UpdateTenantSettings(tenant_id=T, settings=CUSTOM)).then(
        [TenantSettingsUpdated(settings=CUSTOM)]
    )


# --- SuspendTenant --------------------------------------------------------------------------


def test_suspending_an_active_tenant_records_the_reason() -> None:
    tenant = (
        given([CREATED])
        .when(SuspendTenant(tenant_id=T, reason="unpaid invoice"))
        .then([TenantSuspended(reason="unpaid invoice")])
    )
    assert tenant.state.status is TenantStatus.SUSPENDED


def test_suspending_a_suspended_tenant_is_rejected() -> None:
    error = (
        given([CREATED, SUSPENDED])
        .when(SuspendTenant(tenant_id=T, reason="again"))
        .then_raises(DomainError, reason="tenant_not_active")
    )
    assert "suspended" in str(error)


# --- ReactivateTenant -----------------------------------------------------------------------


def test_reactivating_a_suspended_tenant_makes_it_active_again() -> None:
    tenant = (
        given([CREATED, SUSPENDED]).when(ReactivateTenant(tenant_id=T)).then([TenantReactivated()])
    )
    assert tenant.state.status is TenantStatus.ACTIVE


def test_reactivating_an_active_tenant_is_rejected() -> None:
    given([CREATED]).when(ReactivateTenant(tenant_id=T)).then_raises(
        DomainError, reason="tenant_not_suspended"
    )


def test_a_reactivated_tenant_can_be_suspended_again() -> None:
    history = [CREATED, SUSPENDED, TenantReactivated()]
    given(history).when(SuspendTenant(tenant_id=T, reason="again")).then(
        [TenantSuspended(reason="again")]
    )


# --- DeleteTenant ---------------------------------------------------------------------------


@pytest.mark.parametrize("history", [[CREATED], [CREATED, SUSPENDED]], ids=["active", "suspended"])
def test_deleting_an_active_or_suspended_tenant_records_the_reason(
    history: list[TenantCreated | TenantSuspended],
) -> None:
    tenant = (
        given(history)
        .when(DeleteTenant(tenant_id=T, reason="contract ended"))
        .then([TenantDeleted(reason="contract ended")])
    )
    assert tenant.state.status is TenantStatus.DELETED


def test_deleting_a_tenant_without_a_reason_records_no_reason() -> None:
    given([CREATED]).when(DeleteTenant(tenant_id=T)).then([TenantDeleted(reason=None)])


# --- rules every command shares -------------------------------------------------------------


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=_ids(EVERY_COMMAND))
def test_every_command_on_a_deleted_tenant_is_rejected(command: Command) -> None:
    given([CREATED, DELETED]).when(command).then_raises(DomainError, reason="tenant_deleted")


@pytest.mark.parametrize("command", EVERY_COMMAND_BUT_CREATE, ids=_ids(EVERY_COMMAND_BUT_CREATE))
def test_every_command_but_create_on_a_missing_tenant_is_rejected_as_not_found(
    command: Command,
) -> None:
    given([]).when(command).then_raises(DomainError, reason="not_found")


def test_domain_errors_are_command_errors_with_the_domain_code() -> None:
    error = given([]).when(ReactivateTenant(tenant_id=T)).then_raises(DomainError)
    assert error.code == "domain"


# --- the aggregate itself -------------------------------------------------------------------


def test_a_tenant_aggregate_id_must_be_its_tenant_id() -> None:
    with pytest.raises(CommandValidationError, match="'acme' != 'other'"):
        Tenant("acme", "other")


def test_a_tenant_refuses_a_command_addressed_to_another_tenant() -> None:
    tenant = Tenant.from_events(T, T, [CREATED])
    with pytest.raises(CommandValidationError, match="'globex'"):
        tenant.handle(RenameTenant(tenant_id="globex", name="Globex"))
    assert tenant.version == 1


def test_a_tenant_refuses_a_user_command() -> None:
    tenant = Tenant(T, T)
    command = RegisterUser(user_id=T, email="a@example.com", display_name="A")
    with pytest.raises(CommandValidationError, match="Tenant cannot handle RegisterUser"):
        tenant.handle(command)  # type: ignore[arg-type]


def test_a_user_event_in_a_tenant_stream_is_not_silently_skipped() -> None:
    with pytest.raises(UnknownEventTypeError, match="not a Tenant event"):
        Tenant.from_events(T, T, [CREATED, RoleAssigned(role="admin")])


def test_a_tenant_is_rebuilt_from_its_whole_history() -> None:
    history = [
        TenantCreated(name="Acme", settings=DEFAULTS),
        TenantRenamed(old_name="Acme", new_name="Acme Two"),
        TenantSettingsUpdated(settings=CUSTOM),
        TenantSuspended(reason="unpaid"),
        TenantReactivated(),
    ]
    tenant = Tenant.from_events(T, T, history)
    assert tenant.state == TenantState(status=TenantStatus.ACTIVE, name="Acme Two", settings=CUSTOM)
    assert tenant.version == 5
    assert tenant.uncommitted_events == ()


# --- ensure_tenant_active (for commands on other aggregates) ---------------------------------


def test_an_active_tenant_accepts_work() -> None:
    ensure_tenant_active(T, Tenant.from_events(T, T, [CREATED]).state)


@pytest.mark.parametrize(
    ("history", "reason"),
    [
        ([], "not_found"),
        ([CREATED, SUSPENDED], "tenant_not_active"),
        ([CREATED, DELETED], "tenant_deleted"),
    ],
    ids=["missing", "suspended", "deleted"],
)
def test_a_tenant_that_is_not_active_refuses_work_with_a_reason(
    history: list[TenantCreated | TenantSuspended | TenantDeleted], reason: str
) -> None:
    state = Tenant.from_events(T, T, history).state
    with pytest.raises(DomainError) as info:
        ensure_tenant_active(T, state)
    assert info.value.reason == reason
