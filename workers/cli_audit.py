"""``acci audit``: the audit log of command attempts (who sent what, when, and how it ended).

With ``--tenant`` the log is read as acci_app in that tenant's transaction (row-level
security admits only its rows), and only by a principal that may read that tenant's log
(``domain/authorization.check_audit_reader``); without it, every tenant's log is read as the
tables' owner, and only by a system administrator. The principal is ``--as`` or
``ACCI_PRINCIPAL``, as for commands. A principal that may not read the log gets one
``error (authorization): …`` line and exit status 2, before anything is read.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from acci.domain.authorization import check_audit_reader
from acci.domain.errors import AuthorizationError
from acci.workers.cli_send import AsOption, cli_principal
from acci.workers.cli_support import USAGE_EXIT, JsonOption, run, setup
from acci.workers.settings import app_database_url, get_settings

if TYPE_CHECKING:
    from acci.eventstore.audit import AuditEntry, AuditFilter

_DURATION: Final = re.compile(r"^(\d+)([smhdw])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``--since``: a duration back from now (``15m``, ``2h``, ``7d``; s m h d w) or an ISO
    8601 time (``2026-12-01T08:00:00Z``; without an offset it is UTC)."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match:
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match[2]]: int(match[1])})
        except OverflowError:  # further back than a datetime reaches (year 1)
            raise typer.BadParameter(
                f"{value!r} reaches back before the year 1", param_hint="'--since'"
            ) from None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a duration (15m, 2h, 7d) nor an ISO time (2026-12-01T08:00:00Z)",
            param_hint="'--since'",
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def audit(
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant", "-t", show_default=False, help="Only this tenant's attempts (as acci_app)."
        ),
    ] = None,
    principal: Annotated[
        str | None,
        typer.Option(
            "--principal",
            "-p",
            show_default=False,
            help="Only this principal's attempts: ID, or ID@TENANT (ID@system for a system one).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", show_default=False, help="From this time on: 15m, 2h, 7d, or an ISO time."
        ),
    ] = None,
    outcome: Annotated[
        list[str] | None,
        typer.Option(
            "--outcome",
            metavar="OUTCOME",
            show_default=False,
            help="Only this outcome (repeatable): accepted, duplicate, rejected, denied, failed.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    as_principal: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the audit log of command attempts, newest first: when, tenant, principal, outcome,
    command type, target and reason.

    Every attempt is there: accepted, duplicate (re-sent), rejected (validation, domain,
    concurrency), denied (authorization) and failed. Without --tenant it reads every tenant's
    and needs a system administrator (--as or ACCI_PRINCIPAL).
    """
    setup()
    from acci.eventstore.audit import OUTCOMES, AuditFilter

    reader = cli_principal(as_principal)
    unknown = sorted(set(outcome or ()) - set(OUTCOMES))
    if unknown:
        raise typer.BadParameter(
            f"unknown outcome(s) {', '.join(unknown)}; known: {', '.join(OUTCOMES)}",
            param_hint="'--outcome'",
        )
    wanted = AuditFilter(
        tenant_id=tenant,
        principal=principal,
        since=None if since is None else parse_since(since),
        limit=limit,
        outcomes=tuple(outcome or ()),
    )
    try:
        check_audit_reader(reader, tenant)
    except AuthorizationError as e:
        typer.echo(f"error ({e.code}): {e}", err=True)
        raise typer.Exit(USAGE_EXIT) from None
    entries = run(_read(wanted))
    if as_json:
        typer.echo(json.dumps([_entry_json(e) for e in entries], indent=2))
        return
    _show(entries)


async def _read(wanted: AuditFilter) -> list[AuditEntry]:
    """The entries, read as acci_app in the tenant's transaction, or as the owner."""
    from acci.eventstore.audit import AuditLog
    from acci.eventstore.db import create_pool

    settings = get_settings()
    url = (
        settings.database_url.get_secret_value()
        if wanted.tenant_id is None
        else app_database_url(settings)
    )
    async with create_pool(
        url,
        min_size=1,
        max_size=1,
        idle_in_transaction_timeout_ms=settings.db_idle_in_transaction_timeout_ms,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    ) as pool:
        return await AuditLog(pool).entries(wanted)


def _entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "tenant_id": entry.tenant_id,
        "principal": {
            "id": entry.principal_id,
            "tenant_id": entry.principal_tenant,
            "roles": entry.principal_roles,
            "kind": entry.principal_kind,
        },
        "command_type": entry.command_type,
        "command_id": str(entry.command_id),
        "aggregate_type": entry.aggregate_type,
        "aggregate_id": entry.aggregate_id,
        "outcome": entry.outcome,
        "error_type": entry.error_type,
        "reason": entry.reason,
        "workflow_id": entry.workflow_id,
        "workflow_run_id": entry.workflow_run_id,
    }


def _show(entries: list[AuditEntry]) -> None:
    """One line per attempt, the columns aligned on the widest value."""
    if not entries:
        typer.echo("no command attempts recorded (for this filter)")
        return
    header = ("AT", "TENANT", "PRINCIPAL", "OUTCOME", "COMMAND", "TARGET", "REASON")
    rows = [header] + [
        (
            e.at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            e.tenant_id,
            e.principal,
            e.outcome,
            e.command_type,
            f"{e.aggregate_type}/{e.aggregate_id}" if e.aggregate_id else "-",
            (e.reason or "").replace("\n", " ")[:120],
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]).rstrip())
