"""``acci tenant …`` and ``acci user …``: every domain command, sent through Temporal."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from workers.cli_support import JsonOption, TenantOption, run, setup
from workers.settings import get_settings

if TYPE_CHECKING:
    from activities.models import CommandInput, CommandResult
    from eventstore.records import RecordedEvent
    from readmodels.queries import TenantView, UserView
    from workers.command_delivery import CommandDelivery

# `acci <command>`'s exit status when the command is stored but not yet published to RabbitMQ
# (its workflow goes on publishing by itself).
PUBLISH_PENDING_EXIT: Final = 3

tenant_app = typer.Typer(help="Tenant commands.", no_args_is_help=True)
user_app = typer.Typer(help="User commands (in a tenant).", no_args_is_help=True)

CommandIdOption = Annotated[
    uuid.UUID | None,
    typer.Option("--command-id", help="Idempotency key; re-sending it returns the first result."),
]
NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Print the workflow id and return at once.")
]
UserArgument = Annotated[str, typer.Argument(help="The user id.")]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait-for-read-model",
        help="Then wait (at most ACCI_QUERY_CONSISTENCY_TIMEOUT_MS) until the read model shows"
        " the change, and print it.",
    ),
]


def send(
    tenant: str,
    command_type: str,
    payload: dict[str, Any],
    *,
    command_id: uuid.UUID | None,
    as_json: bool,
    no_wait: bool,
    wait_for_read_model: bool = False,
) -> None:
    """Start the command's workflow and print its result (or its workflow id).

    With ``wait_for_read_model``, then wait until the read model of the command's aggregate has
    passed the command's position, and print it too.
    """
    setup()
    from activities.models import CommandInput
    from workers.command_delivery import await_delivery
    from workers.temporal_client import connect, start_command

    settings = get_settings()
    if no_wait and wait_for_read_model:
        raise typer.BadParameter("--no-wait and --wait-for-read-model exclude each other")

    async def main() -> int:
        client = await connect(settings)
        command = CommandInput(
            command_id=command_id or uuid.uuid4(),
            tenant_id=tenant,
            command_type=command_type,
            payload=payload,
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
                f" (is a worker polling task queue {settings.task_queue!r}?)",
                err=True,
            ),
        )
        if delivery.result is None:
            _show_publish_pending(command_type, delivery, as_json=as_json)
            return PUBLISH_PENDING_EXIT
        result = delivery.result
        view = await _read_back(result) if wait_for_read_model else None
        if as_json:
            shown = {**result.model_dump(mode="json"), "position": result.position}
            shown["published"] = True
            if view is not None:
                shown["read_model"] = view.model_dump(mode="json")
            typer.echo(json.dumps(shown, indent=2))
            return 0
        if not result.event_ids:
            typer.echo(
                f"{command_type}: no change ({result.aggregate_type} {result.aggregate_id}"
                f" at v{result.stream_version})"
            )
        else:
            resent = ", re-sent" if sent.resent or result.duplicate else ""
            typer.echo(
                f"{command_type}: {result.aggregate_type} {result.aggregate_id} ->"
                f" v{result.stream_version}, position {result.position}"
                f" (command {result.command_id}{resent})"
            )
        if view is not None:
            from readmodels.queries import TenantView, UserView
            from workers.cli_queries import show_tenant, show_user

            typer.echo("\nread model:")
            if isinstance(view, TenantView):
                show_tenant(view)
            elif isinstance(view, UserView):
                show_user(view)
        return 0

    code = run(main())
    if code:
        raise typer.Exit(code)


async def _stored_events(command: CommandInput) -> list[RecordedEvent]:
    """The command's stored events, read through a short-lived pool (the slow path only)."""
    from workers.command_delivery import stored_events
    from workers.runtime import open_event_store

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


async def _read_back(result: CommandResult) -> TenantView | UserView:
    """The read model of the result's aggregate, once it has passed the result's position."""
    from eventstore.records import Position
    from readmodels.queries import GetTenantDetails, GetUser
    from workers.runtime import open_query_bus

    position = None if result.position is None else Position.parse(result.position)
    async with open_query_bus(get_settings(), pool_max_size=1) as bus:
        if result.aggregate_type == "Tenant":
            return await bus.ask(
                GetTenantDetails(tenant_id=result.aggregate_id, consistent_with=position)
            )
        return await bus.ask(
            GetUser(
                tenant_id=result.tenant_id, user_id=result.aggregate_id, consistent_with=position
            )
        )


def _settings_payload(settings_json: str | None) -> dict[str, Any]:
    if settings_json is None:
        return {}
    try:
        value = json.loads(settings_json)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"--settings is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("--settings must be a JSON object")
    return {"settings": value}


@tenant_app.command("create")
def tenant_create(
    tenant: TenantOption,
    name: Annotated[str, typer.Option(help="The tenant's name.")],
    settings_json: Annotated[
        str | None, typer.Option("--settings", help="JSON, e.g. '{\"max_users\": 50}'.")
    ] = None,
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Create a tenant."""
    payload = {"name": name, **_settings_payload(settings_json)}
    send(
        tenant,
        "CreateTenant",
        payload,
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@tenant_app.command("rename")
def tenant_rename(
    tenant: TenantOption,
    name: Annotated[str, typer.Option(help="The new name.")],
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Rename a tenant."""
    send(
        tenant,
        "RenameTenant",
        {"name": name},
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@tenant_app.command("update-settings")
def tenant_update_settings(
    tenant: TenantOption,
    settings_json: Annotated[str, typer.Option("--settings", help="The settings, as JSON.")],
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Replace a tenant's settings."""
    send(
        tenant,
        "UpdateTenantSettings",
        _settings_payload(settings_json),
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@tenant_app.command("suspend")
def tenant_suspend(
    tenant: TenantOption,
    reason: Annotated[str, typer.Option(help="Why.")],
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Suspend an active tenant."""
    send(
        tenant,
        "SuspendTenant",
        {"reason": reason},
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@tenant_app.command("reactivate")
def tenant_reactivate(
    tenant: TenantOption,
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Reactivate a suspended tenant."""
    send(
        tenant,
        "ReactivateTenant",
        {},
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@tenant_app.command("delete")
def tenant_delete(
    tenant: TenantOption,
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Delete a tenant, for good."""
    payload = {} if reason is None else {"reason": reason}
    send(
        tenant,
        "DeleteTenant",
        payload,
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@user_app.command("register")
def user_register(
    user_id: UserArgument,
    tenant: TenantOption,
    email: Annotated[str, typer.Option(help="Email address.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    role: Annotated[list[str] | None, typer.Option(help="A role (repeatable).")] = None,
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Register a user in a tenant."""
    payload: dict[str, Any] = {"user_id": user_id, "email": email, "display_name": name}
    if role:
        payload["roles"] = role
    send(
        tenant,
        "RegisterUser",
        payload,
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@user_app.command("change-email")
def user_change_email(
    user_id: UserArgument,
    tenant: TenantOption,
    email: Annotated[str, typer.Option(help="The new address.")],
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Change a user's email address."""
    send(
        tenant,
        "ChangeUserEmail",
        {"user_id": user_id, "email": email},
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@user_app.command("assign-role")
def user_assign_role(
    user_id: UserArgument,
    tenant: TenantOption,
    role: Annotated[str, typer.Option(help="The role.")],
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Give a user a role."""
    send(
        tenant,
        "AssignRole",
        {"user_id": user_id, "role": role},
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@user_app.command("revoke-role")
def user_revoke_role(
    user_id: UserArgument,
    tenant: TenantOption,
    role: Annotated[str, typer.Option(help="The role.")],
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Take a role from a user."""
    send(
        tenant,
        "RevokeRole",
        {"user_id": user_id, "role": role},
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )


@user_app.command("deactivate")
def user_deactivate(
    user_id: UserArgument,
    tenant: TenantOption,
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    command_id: CommandIdOption = None,
    as_json: JsonOption = False,
    no_wait: NoWaitOption = False,
    wait: WaitOption = False,
) -> None:
    """Deactivate a user, for good."""
    payload: dict[str, Any] = {"user_id": user_id}
    if reason is not None:
        payload["reason"] = reason
    send(
        tenant,
        "DeactivateUser",
        payload,
        command_id=command_id,
        as_json=as_json,
        no_wait=no_wait,
        wait_for_read_model=wait,
    )
