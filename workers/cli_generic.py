"""``acci command <CommandType>`` and ``acci query <QueryType>``: every installed type, by name.

The friendly verbs (``acci tenant create`` …) are made for the built-in types; these two reach
every command and query of every installed application, built-in or plugged in (an ``acci.apps``
entry point, ``ACCI_APPS``), found once the applications are installed (``cli_support.setup``).
A type's fields come as one JSON object (``--data``), checked against the type before anything
is sent or asked. A command is then sent as the friendly verbs send theirs
(``cli_send.send``), a query asked as theirs are (``cli_queries.ask``). ``--list`` names each
type (``cli_types.py``).
"""

from __future__ import annotations

import inspect
import json
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import pydantic
import typer
from typer._click.exceptions import UsageError

from acci.domain.errors import CommandValidationError, shown, validation_error_from_pydantic
from acci.eventstore.records import Position
from acci.eventstore.validation import MAX_JSON_DEPTH
from acci.readmodels.errors import QueryValidationError
from acci.readmodels.queries import Query
from acci.workers.cli_commands import CommandIdOption, NoWaitOption
from acci.workers.cli_fields import TENANT_FIELD
from acci.workers.cli_queries import ConsistentOption, ask
from acci.workers.cli_send import AsOption, send
from acci.workers.cli_support import JsonOption, run, setup
from acci.workers.cli_types import (
    TypeEntry,
    command_entries,
    is_tenant_query,
    query_entries,
    query_type,
    show_entries,
)

T = TypeVar("T")

DataOption = Annotated[
    str | None,
    typer.Option(
        "--data",
        "-d",
        metavar="JSON",
        show_default=False,
        help="The fields, as a JSON object (default {}); @FILE reads it from a file, - from"
        " standard input.",
    ),
]
ListOption = Annotated[
    bool,
    typer.Option(
        "--list",
        help="List the types (only the one given, if any) with their application;"
        " with --json, with their JSON schemas.",
    ),
]
CommandTypeArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="COMMAND_TYPE",
        show_default=False,
        help="The command's type, e.g. CreateTenant (see --list).",
    ),
]
QueryTypeArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="QUERY_TYPE",
        show_default=False,
        help="The query's type, e.g. GetTenantDetails (see --list).",
    ),
]
CommandTenantOption = Annotated[
    str | None,
    typer.Option("--tenant", "-t", show_default=False, help="Tenant id (required to send)."),
]
QueryTenantOption = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        "-t",
        show_default=False,
        help="Tenant id, for a query asked in a tenant (its tenant_id).",
    ),
]

# How each JSON value that is not an object is named when --data gives one.
_JSON_KINDS: Final[Mapping[type, str]] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def send_command(
    command_type: CommandTypeArgument = None,
    tenant: CommandTenantOption = None,
    data: DataOption = None,
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    as_principal: AsOption = None,
    list_types: ListOption = False,
) -> None:
    """Send a command of any installed application, its fields given as JSON.

    Every command type is reached by its name: the built-in ones (CreateTenant, RegisterUser …)
    and those of the installed applications. The data is checked against the type before
    anything is sent; a command's tenant_id, where it has one, defaults to --tenant. It is then
    sent as the friendly verbs send theirs: re-sending a --command-id returns the first result,
    and exit status 3 says it is stored but its publishing is pending.

    Example:
    acci command IssueInvoice --tenant acme --data '{"invoice_id": "inv-1", "customer": "Bob"}'
    """
    setup()
    if list_types:
        _no_options_with_list(
            {
                "--tenant": tenant,
                "--data": data,
                "--command-id": command_id,
                "--no-wait": no_wait,
                "--as": as_principal,
            }
        )
        _show_list(
            command_entries(),
            command_type,
            kind="command",
            error=CommandValidationError,
            as_json=as_json,
        )
        return
    if command_type is None:
        raise UsageError("Missing argument 'COMMAND_TYPE' (or --list)")
    if tenant is None:
        raise UsageError("Missing option '--tenant' / '-t'")
    command_id = command_id or uuid.uuid4()
    payload = _checked(lambda: _command_payload(command_type, tenant, data, command_id))
    send(
        tenant,
        command_type,
        payload,
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        as_principal=as_principal,
    )


def ask_query(
    query_name: QueryTypeArgument = None,
    tenant: QueryTenantOption = None,
    data: DataOption = None,
    consistent_with: ConsistentOption = None,
    as_json: JsonOption = False,
    list_types: ListOption = False,
    as_principal: AsOption = None,
) -> None:
    """Ask a query of any installed application, its fields given as JSON; print the answer.

    Every query type the query bus answers is reached by its name: the built-in ones
    (GetTenantDetails, ListTenantUsers …) and those of the installed applications. A query
    asked in a tenant takes its tenant_id from --tenant. The answer is printed as JSON (with
    or without --json).

    Example:
    acci query ListOpenInvoices --tenant acme --consistent-with 812:4031
    """
    setup()
    if list_types:
        _no_options_with_list(
            {"--tenant": tenant, "--data": data, "--consistent-with": consistent_with}
        )
        _show_list(
            query_entries(), query_name, kind="query", error=QueryValidationError, as_json=as_json
        )
        return
    if query_name is None:
        raise UsageError("Missing argument 'QUERY_TYPE' (or --list)")
    query, fields = _checked(lambda: _query_fields(query_name, tenant, data, consistent_with))
    _, answer = ask(query, fields, as_principal)
    typer.echo(answer.model_dump_json(indent=2))


def register(app: typer.Typer) -> None:
    """Add ``acci command`` and ``acci query`` to ``app``."""
    app.command("command", help=_help(send_command), no_args_is_help=True)(send_command)
    app.command("query", help=_help(ask_query), no_args_is_help=True)(ask_query)


def data_object(text: str | None, error: Callable[[str], Exception]) -> dict[str, Any]:
    """The JSON object ``--data`` gives (inline, ``@FILE`` or ``-`` for standard input), ``{}``
    without it; ``error(message)`` is raised when it is not one."""
    if text is None:
        return {}
    source = "--data"
    if text == "-":
        text, source = sys.stdin.read(), "--data - (standard input)"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise typer.BadParameter(
                f"cannot read {path}: {reason}", param_hint="'--data'"
            ) from None
        source = f"--data @{path}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{source} is not JSON: {e}") from None
    except RecursionError:  # deeper than the parser goes; far deeper than a payload may be
        raise error(f"{source} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    if not isinstance(value, dict):
        raise error(f"{source} must be a JSON object, not {_JSON_KINDS.get(type(value), 'that')}")
    return value


def _command_payload(
    command_type: str, tenant: str, data: str | None, command_id: uuid.UUID
) -> dict[str, Any]:
    """The command's payload, checked as the worker checks it (``CommandValidationError``)."""
    from acci.activities.command_activities import parse
    from acci.activities.models import CommandInput

    payload = data_object(data, CommandValidationError)
    try:
        command = CommandInput(
            command_id=command_id, tenant_id=tenant, command_type=command_type, payload=payload
        )
    except pydantic.ValidationError as e:
        raise validation_error_from_pydantic(e, f"{command_type} command") from None
    parse(command)
    return payload


def _query_fields(
    name: str, tenant: str | None, data: str | None, consistent_with: Position | None
) -> tuple[type[Query[Any]], dict[str, Any]]:
    """The query type of ``name`` and its fields: ``--data``, the tenant, ``--consistent-with``."""
    query = query_type(name)
    fields = data_object(data, QueryValidationError)
    if not is_tenant_query(query):
        if tenant is not None:
            raise QueryValidationError(f"{name} spans tenants: it is asked without --tenant")
    elif tenant is not None:
        named = fields.setdefault(TENANT_FIELD, tenant)
        if named != tenant:
            raise QueryValidationError(f"the data's tenant_id {named!r} is not --tenant {tenant!r}")
    elif TENANT_FIELD not in fields:
        raise QueryValidationError(f"{name} is asked in a tenant: give --tenant")
    if consistent_with is not None:
        fields["consistent_with"] = consistent_with
    return query, fields


def _help(verb: Callable[..., None]) -> str:
    """The verb's docstring with each paragraph on one line: the help's renderer keeps a
    docstring's line breaks, and wraps a long line to the terminal's width instead."""
    paragraphs = inspect.cleandoc(verb.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _checked(check: Callable[[], T]) -> T:
    """``check()``'s value; a typed error it raises is reported as every ``acci`` error is
    (one line, exit status 1), before anything is sent or asked."""

    async def checked() -> T:
        return check()

    return run(checked())


def _no_options_with_list(options: Mapping[str, object]) -> None:
    given = [name for name, value in options.items() if value not in (None, False)]
    if given:
        raise UsageError(f"--list takes no {', '.join(given)}")


def _show_list(
    entries: list[TypeEntry],
    name: str | None,
    *,
    kind: str,
    error: Callable[[str], Exception],
    as_json: bool,
) -> None:
    """Every type, or only the one named (``error`` if there is none of that name)."""
    if name is not None:
        entries = _checked(lambda: _named(entries, name, kind=kind, error=error))
    show_entries(entries, kind=kind, as_json=as_json)


def _named(
    entries: list[TypeEntry], name: str, *, kind: str, error: Callable[[str], Exception]
) -> list[TypeEntry]:
    found = [entry for entry in entries if entry.name == name]
    if not found:
        known = ", ".join(entry.name for entry in entries)
        raise error(f"unknown {kind} type {shown(name)}; known: {known}")
    return found
