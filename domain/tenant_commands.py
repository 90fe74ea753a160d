"""Commands of the Tenant aggregate."""

from __future__ import annotations

from typing import ClassVar

from acci.domain.command import Command
from acci.domain.identifiers import TenantId
from acci.domain.tenant_settings import TenantSettings
from acci.domain.text import Name, Reason


class _TenantCommand(Command):
    # The aggregate id of a tenant is its tenant id.
    tenant_id: TenantId

    @property
    def aggregate_id(self) -> str:
        """The tenant id."""
        return self.tenant_id


class CreateTenant(_TenantCommand):
    """Create a tenant, active from the start."""

    command_type: ClassVar[str] = "CreateTenant"

    name: Name
    settings: TenantSettings = TenantSettings()


class RenameTenant(_TenantCommand):
    """Give a tenant a new name."""

    command_type: ClassVar[str] = "RenameTenant"

    name: Name


class UpdateTenantSettings(_TenantCommand):
    """Replace a tenant's settings as a whole."""

    command_type: ClassVar[str] = "UpdateTenantSettings"

    settings: TenantSettings


class SuspendTenant(_TenantCommand):
    """Stop an active tenant from accepting work."""

    command_type: ClassVar[str] = "SuspendTenant"

    reason: Reason


class ReactivateTenant(_TenantCommand):
    """Let a suspended tenant accept work again."""

    command_type: ClassVar[str] = "ReactivateTenant"


class DeleteTenant(_TenantCommand):
    """Delete an active or suspended tenant, for good."""

    command_type: ClassVar[str] = "DeleteTenant"

    reason: Reason | None = None


TenantCommand = (
    CreateTenant
    | RenameTenant
    | UpdateTenantSettings
    | SuspendTenant
    | ReactivateTenant
    | DeleteTenant
)
