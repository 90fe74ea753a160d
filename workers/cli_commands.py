"""``acci tenant …`` and ``acci user …``: one verb per domain command, made from the catalogue.

Every command type of the built-in application (``domain/tenancy.py``) becomes a verb of its
aggregate's group, named by its type less the aggregate's name (``CreateTenant`` is
``acci tenant create``, ``ChangeUserEmail`` is ``acci user change-email``), with the command's
docstring as its help. Plugged-in applications' commands go through ``acci command``.
Its fields become arguments and options (workers/cli_fields.py says how); every verb also takes
``--command-id``, ``--json``, ``--no-wait``, ``--as`` and, where the aggregate has a read model,
``--wait-for-read-model``. A new command type needs no code here: at most a line in
``FIELD_HELP`` or ``OPTION_NAMES`` if its field names do not read well on the command line.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Final

import typer

from acci.domain.aggregate import EventSourced
from acci.domain.command import Command
from acci.domain.tenancy import AGGREGATES as BUILT_IN
from acci.domain.tenant_commands import CreateTenant, RenameTenant
from acci.domain.user_commands import ChangeUserEmail
from acci.workers.cli_fields import (
    TENANT_FIELD,
    field_parameters,
    generated_verb,
    keyword,
    model_data,
)
from acci.workers.cli_send import READ_BACK, AsOption, send
from acci.workers.cli_support import JsonOption

CommandIdOption = Annotated[
    uuid.UUID | None,
    typer.Option("--command-id", help="Idempotency key; re-sending it returns the first result."),
]
NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Print the workflow id and return at once.")
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait-for-read-model",
        help="Then wait (at most ACCI_QUERY_CONSISTENCY_TIMEOUT_MS) until the read model shows"
        " the change, and print it.",
    ),
]

# The domain's fields carry no descriptions: their help on the command line. By field name,
# and by (command, field name) where one command's field says more than the name alone.
FIELD_HELP: Final[Mapping[str, str]] = {
    "settings": "The settings, as JSON.",
    "reason": "Why.",
    "email": "Email address.",
    "display_name": "Display name.",
    "roles": "A role (repeatable).",
    "role": "The role.",
}
COMMAND_FIELD_HELP: Final[Mapping[tuple[type[Command], str], str]] = {
    (CreateTenant, "name"): "The tenant's name.",
    (CreateTenant, "settings"): "JSON, e.g. '{\"max_users\": 50}'.",
    (RenameTenant, "name"): "The new name.",
    (ChangeUserEmail, "email"): "The new address.",
}
# Option names that differ from the field's (``--field-name``).
OPTION_NAMES: Final[Mapping[str, str]] = {"display_name": "--name", "roles": "--role"}

# A word of a CamelCase type name: "Change", "User", "Email"; an acronym ("MFA") is one word.
_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*")


def verb_name(command: type[Command], aggregate: type[EventSourced[Any, Any]]) -> str:
    """The command's verb: its type's words less the aggregate's, in kebab case."""
    words = [
        w.lower() for w in _WORD.findall(command.command_type) if w != aggregate.aggregate_type
    ]
    return "-".join(words)


def group_name(aggregate: type[EventSourced[Any, Any]]) -> str:
    """The aggregate's group of verbs: ``acci tenant``, ``acci user``."""
    return aggregate.aggregate_type.lower()


def command_group(aggregate: type[EventSourced[Any, Any]]) -> typer.Typer:
    """The aggregate's verbs: one per command type it handles."""
    # Every command is sent in a tenant; only the tenant's own commands are addressed to it.
    in_a_tenant = all(TENANT_FIELD not in c.model_fields for c in aggregate.command_types)
    where = " (in a tenant)" if in_a_tenant else ""
    app = typer.Typer(help=f"{aggregate.aggregate_type} commands{where}.", no_args_is_help=True)
    for command in aggregate.command_types:
        _register(app, command, aggregate)
    return app


def _register(
    app: typer.Typer, command: type[Command], aggregate: type[EventSourced[Any, Any]]
) -> None:
    help = {
        **FIELD_HELP,
        **{field: text for (c, field), text in COMMAND_FIELD_HELP.items() if c is command},
    }
    fields = field_parameters(command, names=OPTION_NAMES, help=help, with_tenant=True)
    readable = aggregate.aggregate_type in READ_BACK
    common = [
        keyword("command_id", CommandIdOption, None),
        keyword("as_json", JsonOption, False),
        keyword("no_wait", NoWaitOption, False),
        keyword("as_principal", AsOption, None),
        *([keyword("wait_for_read_model", WaitOption, False)] if readable else []),
    ]

    def run(values: dict[str, Any]) -> None:
        payload = model_data(fields, values)
        # The tenant travels in the command's envelope (a tenant command's own id defaults to it).
        tenant = payload.pop(TENANT_FIELD)
        send(
            tenant,
            command.command_type,
            payload,
            command_id=values["command_id"],
            as_json=values["as_json"],
            no_wait=values["no_wait"],
            wait_for_read_model=values.get("wait_for_read_model", False),
            as_principal=values["as_principal"],
        )

    parameters = [f.parameter for f in fields] + common
    verb = generated_verb(parameters, run)
    app.command(verb_name(command, aggregate), help=_help(command))(verb)


def _help(command: type[Command]) -> str:
    # The class's own docstring: inspect.getdoc would fall back to Command's.
    return inspect.cleandoc(command.__doc__ or command.command_type)


# The built-in application's aggregates get friendly groups; every installed application's
# commands (these included) are reached by `acci command <CommandType>` (cli_generic.py).
COMMAND_APPS: Final[Mapping[str, typer.Typer]] = {
    group_name(aggregate): command_group(aggregate) for aggregate in BUILT_IN
}
tenant_app: Final = COMMAND_APPS["tenant"]
user_app: Final = COMMAND_APPS["user"]
