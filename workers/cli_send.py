"""Sending one domain command from ``acci``: start its workflow, wait for it boundedly, print.

A command's workflow stores its events, then publishes them to RabbitMQ. The CLI prints the
result once published; past ``ACCI_COMMAND_PUBLISH_WAIT_MS`` it says the command is stored and
its publishing pending (exit status 3) while the workflow goes on by itself. With
``--wait-for-read-model`` it then prints the aggregate's read model once that has caught up.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from acci.domain.errors import CommandValidationError
from acci.domain.principals import Principal, PrincipalFormatError, parse_principal
from acci.eventstore.records import Position
from acci.readmodels.errors import QueryError
from acci.readmodels.tenancy.tenants import GetTenantDetails
from acci.readmodels.tenancy.users import GetUser
from acci.workers.cli_support import run, setup
from acci.workers.cli_views import show_tenant, show_user
from acci.workers.settings import get_settings

if TYPE_CHECKING:
    from pydantic import BaseModel

    from acci.activities.models import CommandInput, CommandResult
    from acci.eventstore.records import RecordedEvent
    from acci.readmodels.queries import Query
    from acci.workers.command_delivery import CommandDelivery

# `acci <command>`'s exit status when the command is stored but not yet published to RabbitMQ
# (its workflow goes on publishing by itself).
PUBLISH_PENDING_EXIT: Final = 3

AsOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        metavar="PRINCIPAL",
        show_default=False,
        help="Act as this principal: ID@TENANT:ROLE,ROLE for a tenant's user (ann@acme:admin),"
        " ID:system_admin for a system administrator, service/NAME for a job (default:"
        " ACCI_PRINCIPAL, else cli:system_admin, the trusted local user).",
    ),
]


def cli_principal(as_text: str | None) -> Principal:
    """The principal ``acci`` acts as: ``--as`` if given, else ``ACCI_PRINCIPAL``; a string
    that names none is a usage error (exit status 2) saying why."""
    text, source = (as_text, "--as") if as_text is not None else (get_settings().principal, None)
    try:
        return parse_principal(text)
    except PrincipalFormatError as e:
        if source is None:
            raise typer.BadParameter(str(e), param_hint="ACCI_PRINCIPAL") from None
        raise typer.BadParameter(str(e), param_hint=f"'{source}'") from None


@dataclass(frozen=True, slots=True)
class ReadBack:
    """How ``--wait-for-read-model`` reads an aggregate back: the query, and how to print it."""

    query: Callable[[CommandResult, Position | None], Query[Any]]
    show: Callable[[Any], None]


# The read model that shows each aggregate type. A command of an aggregate without one has no
# --wait-for-read-model option.
READ_BACK: Final[Mapping[str, ReadBack]] = {
    "Tenant": ReadBack(
        lambda result, at: GetTenantDetails(tenant_id=result.aggregate_id, consistent_with=at),
        show_tenant,
    ),
    "User": ReadBack(
        lambda result, at: GetUser(
            tenant_id=result.tenant_id, user_id=result.aggregate_id, consistent_with=at
        ),
        show_user,
    ),
}


def send(
    tenant: str,
    command_type: str,
    payload: dict[str, Any],
    *,
    command_id: uuid.UUID | None,
    as_json: bool,
    no_wait: bool,
    wait_for_read_model: bool = False,
    as_principal: str | None = None,
) -> None:
    """Start the command's workflow as ``--as`` (else ``ACCI_PRINCIPAL``) and print its result
    (or its workflow id).

    With ``wait_for_read_model``, then wait until the read model of the command's aggregate has
    passed the command's position, and print it too.
    """
    setup()
    from acci.activities.models import CommandInput
    from acci.workers.command_delivery import await_delivery
    from acci.workers.temporal_client import connect, start_command
    from acci.workers.tracing import configure_tracing

    settings = get_settings()
    if no_wait and wait_for_read_model:
        raise typer.BadParameter("--no-wait and --wait-for-read-model exclude each other")
    principal = cli_principal(as_principal)

    async def main() -> int:
        _check_size(command_type, payload, settings.max_payload_bytes)
        client = await connect(settings, interceptors=configure_tracing(settings))
        command = CommandInput(
            command_id=command_id or uuid.uuid4(),
            tenant_id=tenant,
            command_type=command_type,
            payload=payload,
            principal=principal,
        )
        sent = await start_command(client, command, task_queue=settings.task_queue)
        if no_wait:
            typer.echo(json.dumps({"workflow_id": sent.handle.id}) if as_json else sent.handle.id)
            return 0
        delivery = await await_delivery(
            sent,
            command,
            wait=settings.command_publish_wait_ms / 1000,
            stored=lambda: _stored_events(command),
            still_waiting=lambda: typer.echo(
                f"waiting: command {command.command_id} is not stored yet"
                f" (is a worker polling task queue {settings.task_queue!r} of namespace"
                f" {settings.temporal_namespace!r} at {settings.temporal_address}?)",
                err=True,
            ),
        )
        if delivery.result is None:
            _show_publish_pending(command_type, delivery, as_json=as_json)
            return PUBLISH_PENDING_EXIT
        view = None
        if wait_for_read_model:
            try:
                view = await _read_back(delivery.result, principal)
            except QueryError as e:
                # Stored all the same: say so first, or the sender may send it again anew.
                _show_result(
                    command_type, delivery.result, None, resent=sent.resent, as_json=as_json
                )
                kind = getattr(e, "code", None) or type(e).__name__
                typer.echo(f"error ({kind}): the command is stored (above), but {e}", err=True)
                return 1
        _show_result(command_type, delivery.result, view, resent=sent.resent, as_json=as_json)
        return 0

    code = run(main())
    if code:
        raise typer.Exit(code)


def _check_size(command_type: str, payload: dict[str, Any], most: int) -> None:
    """A payload larger than an event may be is refused before it is sent (Temporal's own limit
    on a run's input is larger, and its refusal says nothing of the command)."""
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if size > most:
        raise CommandValidationError(
            f"the {command_type} command's payload is {size:,} bytes as JSON; a command may"
            f" carry at most {most:,} (ACCI_MAX_PAYLOAD_BYTES)"
        )


async def _stored_events(command: CommandInput) -> list[RecordedEvent]:
    """The command's stored events, read through a short-lived pool (the slow path only)."""
    from acci.workers.command_delivery import stored_events
    from acci.workers.runtime import open_event_store

    settings = get_settings().model_copy(update={"db_pool_min_size": 1, "db_pool_max_size": 1})
    async with open_event_store(settings, migrate_schema=False) as rt:
        return await stored_events(rt.store, command)


def _show_publish_pending(command_type: str, delivery: CommandDelivery, *, as_json: bool) -> None:
    """A command stored whose publishing to RabbitMQ is still pending (exit status 3)."""
    if as_json:
        shown = {
            "command_id": str(delivery.command_id),
            "tenant_id": delivery.tenant_id,
            "workflow_id": delivery.workflow_id,
            "event_ids": [str(e) for e in delivery.event_ids],
            "positions": list(delivery.positions),
            "position": delivery.position,
            "published": False,
        }
        typer.echo(json.dumps(shown, indent=2))
        return
    typer.echo(
        f"{command_type}: stored, position {delivery.position} (command {delivery.command_id});"
        f" publishing to RabbitMQ is pending: workflow {delivery.workflow_id} publishes"
        " by itself once RabbitMQ answers"
    )


async def _read_back(result: CommandResult, principal: Principal) -> BaseModel:
    """The read model of the result's aggregate, once it has passed the result's position, as
    the sender may read it."""
    from acci.workers.runtime import open_query_bus

    position = None if result.position is None else Position.parse(result.position)
    query = READ_BACK[result.aggregate_type].query(result, position)
    async with open_query_bus(get_settings(), pool_max_size=1, principal=principal) as bus:
        return await bus.ask(query)


def _show_result(
    command_type: str,
    result: CommandResult,
    view: BaseModel | None,
    *,
    resent: bool,
    as_json: bool,
) -> None:
    """A published command's result (and its aggregate's read model, if read back)."""
    if as_json:
        shown = {**result.model_dump(mode="json"), "position": result.position}
        shown["published"] = True
        if view is not None:
            shown["read_model"] = view.model_dump(mode="json")
        typer.echo(json.dumps(shown, indent=2))
        return
    if not result.event_ids:
        typer.echo(
            f"{command_type}: no change ({result.aggregate_type} {result.aggregate_id}"
            f" at v{result.stream_version})"
        )
    else:
        again = ", re-sent" if resent or result.duplicate else ""
        typer.echo(
            f"{command_type}: {result.aggregate_type} {result.aggregate_id} ->"
            f" v{result.stream_version}, position {result.position}"
            f" (command {result.command_id}{again})"
        )
    if view is not None:
        typer.echo("\nread model:")
        READ_BACK[result.aggregate_type].show(view)
