"""``acci tenant get|list|activity`` and ``acci user get|list``: the read models, via the query bus.

The commands live on two Typer apps that ``workers/cli.py`` merges into ``acci tenant`` and
``acci user`` (``tenant_app.add_typer(tenant_queries)``, ``user_app.add_typer(user_queries)``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eventstore.records import Position
from workers.cli_support import JsonOption, TenantOption, run, setup
from workers.settings import get_settings

if TYPE_CHECKING:
    from pydantic import BaseModel

    from readmodels.queries import Query, TenantView, UserView

tenant_queries = typer.Typer(help="Tenant queries (read models).")
user_queries = typer.Typer(help="User queries (read models).")

ConsistentOption = Annotated[
    Position | None,
    typer.Option(
        "--consistent-with",
        parser=Position.parse,
        metavar="TX:GP",
        help="Answer only once the read model has passed this position (a command's result).",
    ),
]
LimitOption = Annotated[int, typer.Option(help="At most this many rows (1-500).")]
OffsetOption = Annotated[int, typer.Option(help="Skip this many rows.")]
CursorOption = Annotated[
    str | None, typer.Option(help="Continue after a page (the cursor the page printed).")
]
UserArgument = Annotated[str, typer.Argument(help="The user id.")]


def answer(make_query: type[Query[Any]], as_json: bool, **fields: object) -> BaseModel:
    """Ask the query built from ``fields``; print it as JSON if asked. Errors exit with 1."""
    setup()
    from workers.runtime import open_query_bus

    async def main() -> BaseModel:
        # Built here, so that a malformed query is reported like every other query error.
        query = make_query(**fields)
        async with open_query_bus(get_settings(), pool_max_size=2) as bus:
            return await bus.ask(query)

    result = run(main())
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    return result


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


def _next_page(cursor: str | None) -> None:
    if cursor is not None:
        typer.echo(f"\nmore: --cursor {cursor}")


@tenant_queries.command("get")
def tenant_get(
    tenant: TenantOption, as_json: JsonOption = False, consistent_with: ConsistentOption = None
) -> None:
    """Show a tenant."""
    from readmodels.queries import GetTenantDetails, TenantView

    view = answer(GetTenantDetails, as_json, tenant_id=tenant, consistent_with=consistent_with)
    if as_json:
        return
    assert isinstance(view, TenantView)
    show_tenant(view)


@tenant_queries.command("list")
def tenant_list(
    status: Annotated[
        str | None, typer.Option(help="Only tenants in this status (active, suspended, deleted).")
    ] = None,
    sort: Annotated[str, typer.Option(help="name, created_at or last_updated.")] = "name",
    desc: Annotated[bool, typer.Option("--desc", help="Sort descending.")] = False,
    limit: LimitOption = 50,
    offset: OffsetOption = 0,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
    consistent_with: ConsistentOption = None,
) -> None:
    """List tenants, a page at a time."""
    from readmodels.queries import ListTenants, Page

    page = answer(
        ListTenants,
        as_json,
        status=status,
        sort=sort,
        descending=desc,
        limit=limit,
        offset=offset,
        cursor=cursor,
        consistent_with=consistent_with,
    )
    if as_json:
        return
    assert isinstance(page, Page)
    tenants: tuple[TenantView, ...] = page.items
    if not tenants:
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
            for t in tenants
        ],
    )
    _next_page(page.next_cursor)


@tenant_queries.command("activity")
def tenant_activity(
    tenant: TenantOption, as_json: JsonOption = False, consistent_with: ConsistentOption = None
) -> None:
    """Count a tenant's events by type."""
    from readmodels.queries import GetTenantActivity, TenantActivityView

    view = answer(GetTenantActivity, as_json, tenant_id=tenant, consistent_with=consistent_with)
    if as_json:
        return
    assert isinstance(view, TenantActivityView)
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


@user_queries.command("get")
def user_get(
    user_id: UserArgument,
    tenant: TenantOption,
    as_json: JsonOption = False,
    consistent_with: ConsistentOption = None,
) -> None:
    """Show a user of a tenant."""
    from readmodels.queries import GetUser, UserView

    view = answer(
        GetUser, as_json, tenant_id=tenant, user_id=user_id, consistent_with=consistent_with
    )
    if as_json:
        return
    assert isinstance(view, UserView)
    show_user(view)


@user_queries.command("list")
def user_list(
    tenant: TenantOption,
    status: Annotated[
        str | None, typer.Option(help="Only users in this status (active, deactivated).")
    ] = None,
    role: Annotated[str | None, typer.Option(help="Only users with this role.")] = None,
    limit: LimitOption = 50,
    offset: OffsetOption = 0,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
    consistent_with: ConsistentOption = None,
) -> None:
    """List a tenant's users by email, a page at a time."""
    from readmodels.queries import ListTenantUsers, Page

    page = answer(
        ListTenantUsers,
        as_json,
        tenant_id=tenant,
        status=status,
        role=role,
        limit=limit,
        offset=offset,
        cursor=cursor,
        consistent_with=consistent_with,
    )
    if as_json:
        return
    assert isinstance(page, Page)
    users: tuple[UserView, ...] = page.items
    if not users:
        typer.echo(f"no users in tenant {tenant}")
        return
    _table(
        ["USER", "EMAIL", "NAME", "ROLES", "STATUS"],
        [(u.user_id, u.email, u.display_name, ",".join(u.roles), u.status) for u in users],
    )
    _next_page(page.next_cursor)
