"""The Tenant aggregate: a tenant's lifecycle, name and settings."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, assert_never, get_args

from pydantic import BaseModel, ConfigDict

from acci.domain.aggregate import EventSourced
from acci.domain.command import Command
from acci.domain.errors import CommandValidationError, DomainError, UnknownEventTypeError
from acci.domain.events import DomainEvent
from acci.domain.tenant_commands import (
    CreateTenant,
    DeleteTenant,
    ReactivateTenant,
    RenameTenant,
    SuspendTenant,
    TenantCommand,
    UpdateTenantSettings,
)
from acci.domain.tenant_events import (
    TenantCreated,
    TenantDeleted,
    TenantEvent,
    TenantReactivated,
    TenantRenamed,
    TenantSettingsUpdated,
    TenantSuspended,
    UserSeatReleased,
    UserSeatReserved,
)
from acci.domain.tenant_settings import TenantSettings

__all__ = [
    "CreateTenant",
    "DeleteTenant",
    "ReactivateTenant",
    "RenameTenant",
    "SuspendTenant",
    "Tenant",
    "TenantCommand",
    "TenantCreated",
    "TenantDeleted",
    "TenantEvent",
    "TenantReactivated",
    "TenantRenamed",
    "TenantSettings",
    "TenantSettingsUpdated",
    "TenantState",
    "TenantStatus",
    "TenantSuspended",
    "UpdateTenantSettings",
    "UserSeatReleased",
    "UserSeatReserved",
    "ensure_tenant_active",
]


class TenantStatus(StrEnum):
    """Where a tenant is in its lifecycle; ``none`` means it was never created."""

    NONE = "none"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class TenantState(BaseModel):
    """What the Tenant aggregate knows: status, name, settings and seats taken by users."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: TenantStatus = TenantStatus.NONE
    name: str = ""
    settings: TenantSettings = TenantSettings()
    # Active users, counted by their seats (domain/seats.py): at most settings.max_users.
    active_users: int = 0


class Tenant(EventSourced[TenantState, TenantCommand]):
    """A tenant; its aggregate id is its tenant id."""

    aggregate_type: ClassVar[str] = "Tenant"
    # 2: active_users (seats). Snapshots of schema 1 are ignored and the state folded again.
    state_schema_version: ClassVar[int] = 2
    command_types: ClassVar[tuple[type[Command], ...]] = get_args(TenantCommand)

    def __init__(
        self,
        aggregate_id: str,
        tenant_id: str,
        *,
        state: TenantState | None = None,
        version: int = 0,
    ) -> None:
        if aggregate_id != tenant_id:
            raise CommandValidationError(
                f"a Tenant's aggregate id must be its tenant id: {aggregate_id!r} != {tenant_id!r}"
            )
        super().__init__(aggregate_id, tenant_id, state=state, version=version)

    @staticmethod
    def initial_state() -> TenantState:
        """A tenant that does not exist yet."""
        return TenantState()

    @staticmethod
    def decide(command: TenantCommand, state: TenantState) -> list[DomainEvent]:
        """The events ``command`` produces; raises ``DomainError`` when a rule forbids it."""
        tenant_id = command.tenant_id
        # Checked before "already exists": a deleted tenant's id is never handed out again.
        if state.status is TenantStatus.DELETED:
            raise DomainError(f"tenant {tenant_id!r} is deleted", reason="tenant_deleted")
        if isinstance(command, CreateTenant):
            if state.status is not TenantStatus.NONE:
                raise DomainError(f"tenant {tenant_id!r} already exists", reason="already_exists")
            return [TenantCreated(name=command.name, settings=command.settings)]
        if state.status is TenantStatus.NONE:
            raise DomainError(f"tenant {tenant_id!r} does not exist", reason="not_found")
        match command:
            case RenameTenant():
                if command.name == state.name:
                    return []
                return [TenantRenamed(old_name=state.name, new_name=command.name)]
            case UpdateTenantSettings():
                if command.settings == state.settings:
                    return []
                return [TenantSettingsUpdated(settings=command.settings)]
            case SuspendTenant():
                if state.status is not TenantStatus.ACTIVE:
                    raise DomainError(
                        f"tenant {tenant_id!r} is {state.status}; only an active tenant can be"
                        " suspended",
                        reason="tenant_not_active",
                    )
                return [TenantSuspended(reason=command.reason)]
            case ReactivateTenant():
                if state.status is not TenantStatus.SUSPENDED:
                    raise DomainError(
                        f"tenant {tenant_id!r} is {state.status}; only a suspended tenant can be"
                        " reactivated",
                        reason="tenant_not_suspended",
                    )
                return [TenantReactivated()]
            case DeleteTenant():
                return [TenantDeleted(reason=command.reason)]
            case _:
                assert_never(command)

    @staticmethod
    def evolve(state: TenantState, event: DomainEvent) -> TenantState:
        """The state after ``event``."""
        match event:
            case TenantCreated():
                return state.model_copy(
                    update={
                        "status": TenantStatus.ACTIVE,
                        "name": event.name,
                        "settings": event.settings,
                    }
                )
            case TenantRenamed():
                return state.model_copy(update={"name": event.new_name})
            case TenantSettingsUpdated():
                return state.model_copy(update={"settings": event.settings})
            case TenantSuspended():
                return state.model_copy(update={"status": TenantStatus.SUSPENDED})
            case TenantReactivated():
                return state.model_copy(update={"status": TenantStatus.ACTIVE})
            case TenantDeleted():
                return state.model_copy(update={"status": TenantStatus.DELETED})
            case UserSeatReserved():
                return state.model_copy(update={"active_users": state.active_users + 1})
            case UserSeatReleased():
                return state.model_copy(update={"active_users": max(state.active_users - 1, 0)})
            case _:
                # A foreign event in a tenant stream is corruption; skipping it would hide that.
                raise UnknownEventTypeError(
                    event.event_type, event.event_version, detail="not a Tenant event"
                )


def ensure_tenant_active(tenant_id: str, state: TenantState) -> None:
    """Raise ``DomainError`` unless the tenant exists and is active.

    For commands on other aggregates (a user, say) that need their tenant to accept work.
    """
    if state.status is TenantStatus.NONE:
        raise DomainError(f"tenant {tenant_id!r} does not exist", reason="not_found")
    if state.status is TenantStatus.DELETED:
        raise DomainError(f"tenant {tenant_id!r} is deleted", reason="tenant_deleted")
    if state.status is not TenantStatus.ACTIVE:
        raise DomainError(
            f"tenant {tenant_id!r} is {state.status}, not active", reason="tenant_not_active"
        )
