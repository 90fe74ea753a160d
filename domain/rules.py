"""Rules across aggregates: another aggregate a command needs, checked and written with it.

A command is decided by its own aggregate; some also depend on another one of the same tenant
(a user's command needs its tenant to be active) or change it (a registration takes one of the
tenant's seats). Such a rule is declared by an application, never written into the command
path: before the command is decided its ``RelatedAggregate`` is loaded and ``check``-ed; after,
``follow_up`` may record events on it, and both streams are appended in one transaction, each at
the version it was loaded at (so a race on the related aggregate is a conflict, decided again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from acci.domain.aggregate import EventSourced
from acci.domain.command import Command
from acci.domain.events import DomainEvent

Check = Callable[[str, Any], None]
"""``(tenant_id, related state)``: raise ``DomainError`` if the command may not run."""

FollowUp = Callable[[str, Any, str, Sequence[DomainEvent]], list[DomainEvent]]
"""``(tenant_id, related state, the command's aggregate id, its decided events)``: the events to
record on the related aggregate (none: it is not written)."""


def _the_tenant(tenant_id: str, command: Command) -> str:
    return tenant_id


@dataclass(frozen=True, slots=True)
class RelatedAggregate:
    """Another aggregate that commands of ``applies_to`` need: loaded, checked, maybe written."""

    aggregate: type[EventSourced[Any, Any]]
    applies_to: tuple[type[EventSourced[Any, Any]], ...]
    check: Check | None = None
    follow_up: FollowUp | None = None
    # Which instance: by default the tenant's own (its id is the tenant id, as a Tenant's is).
    aggregate_id: Callable[[str, Command], str] = _the_tenant


def requires_active_tenant(*aggregates: type[EventSourced[Any, Any]]) -> RelatedAggregate:
    """The rule that commands of ``aggregates`` run only in an existing, active tenant."""
    from acci.domain.tenant import Tenant, ensure_tenant_active

    return RelatedAggregate(Tenant, applies_to=aggregates, check=ensure_tenant_active)
