"""How ``acci`` prints the read side's answers as text: one record a field a line, or a table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from acci.readmodels.queries import Page
    from acci.readmodels.tenancy.tenant_activity import TenantActivityView
    from acci.readmodels.tenancy.tenants import TenantView
    from acci.readmodels.tenancy.users import ListTenantUsers, UserView


def show_tenant(view: TenantView) -> None:
    """Print a tenant's read model, a field a line."""
    _fields(
        [
            ("tenant", view.tenant_id),
            ("name", view.name),
            ("status", view.status),
            ("users", view.user_count),
            ("settings", json.dumps(view.settings)),
            ("created", view.created_at.isoformat()),
            ("updated", view.last_updated.isoformat()),
            ("version", view.version),
        ]
    )


def show_user(view: UserView) -> None:
    """Print a user's read model, a field a line."""
    _fields(
        [
            ("user", view.user_id),
            ("tenant", view.tenant_id),
            ("email", view.email),
            ("name", view.display_name),
            ("roles", ", ".join(view.roles)),
            ("status", view.status),
            ("created", view.created_at.isoformat()),
            ("updated", view.last_updated.isoformat()),
            ("version", view.version),
        ]
    )


def show_tenants(page: Page[TenantView]) -> None:
    """Print a page of tenants as a table, and how to ask for the next page."""
    if not page.items:
        typer.echo("no tenants")
        return
    _table(
        ["TENANT", "NAME", "STATUS", "USERS", "CREATED", "UPDATED"],
        [
            (
                t.tenant_id,
                t.name,
                t.status,
                t.user_count,
                t.created_at.isoformat(timespec="seconds"),
                t.last_updated.isoformat(timespec="seconds"),
            )
            for t in page.items
        ],
    )
    _next_page(page.next_cursor)


def show_users(page: Page[UserView], query: ListTenantUsers) -> None:
    """Print a page of a tenant's users as a table, and how to ask for the next page."""
    if not page.items:
        typer.echo(f"no users in tenant {query.tenant_id}")
        return
    _table(
        ["USER", "EMAIL", "NAME", "ROLES", "STATUS"],
        [(u.user_id, u.email, u.display_name, ",".join(u.roles), u.status) for u in page.items],
    )
    _next_page(page.next_cursor)


def show_activity(view: TenantActivityView) -> None:
    """Print a tenant's event counts by type as a table, with the totals."""
    _table(
        ["EVENT TYPE", "COUNT", "LAST"],
        [
            (a.event_type, a.event_count, a.last_event_at.isoformat(timespec="seconds"))
            for a in view.event_types
        ],
    )
    typer.echo(
        f"\n{view.total_events} events, the last at {view.last_event_at.isoformat('T', 'seconds')}"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(header), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo(line.rstrip())


def _fields(pairs: Sequence[tuple[str, object]]) -> None:
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        typer.echo(f"{name.ljust(width)}  {value}")


def _next_page(cursor: str | None) -> None:
    if cursor is not None:
        typer.echo(f"\nmore: --cursor {cursor}")
