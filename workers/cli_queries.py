"""``acci tenant get|list|activity`` and ``acci user get|list``: the read models, via the query bus.

One row of ``QUERY_VERBS`` per verb: its group, query type, help and printer. The verb's
arguments and options are generated from the query's fields (workers/cli_fields.py); each also
takes ``--json`` and ``--consistent-with``. The verbs live on the Typer apps of ``QUERY_APPS``,
which ``workers/cli.py`` merges into the command groups of the same name (``acci tenant``,
``acci user``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from acci.eventstore.records import Position
from acci.readmodels.queries import MAX_LIMIT, Query
from acci.readmodels.tenancy.tenant_activity import GetTenantActivity
from acci.readmodels.tenancy.tenants import GetTenantDetails, ListTenants
from acci.readmodels.tenancy.users import GetUser, ListTenantUsers
from acci.workers.cli_fields import field_parameters, generated_verb, keyword, model_data
from acci.workers.cli_send import AsOption, cli_principal
from acci.workers.cli_support import JsonOption, run, setup
from acci.workers.cli_views import show_activity, show_tenant, show_tenants, show_user, show_users
from acci.workers.settings import get_settings

if TYPE_CHECKING:
    from pydantic import BaseModel

ConsistentOption = Annotated[
    Position | None,
    typer.Option(
        "--consistent-with",
        parser=Position.parse,
        metavar="TX:GP",
        help="Answer only once the read model has passed this position (a command's result).",
    ),
]


@dataclass(frozen=True, slots=True)
class QueryVerb:
    """One query verb: where it lives, what it asks, and how it prints the answer."""

    group: str
    name: str
    query: type[Query[Any]]
    help: str
    # Prints the answer (given the query asked) as text; --json prints the answer's JSON instead.
    show: Callable[[Any, Any], None]
    # Help for the query's fields, where their name alone does not say enough.
    fields_help: Mapping[str, str] = field(default_factory=dict)


# Help shared by the paging queries' fields.
_PAGING_HELP: Final = {
    "limit": f"At most this many rows (1-{MAX_LIMIT}).",
    "offset": "Skip this many rows.",
    "cursor": "Continue after a page (the cursor the page printed).",
}

QUERY_VERBS: Final = (
    QueryVerb(
        group="tenant",
        name="get",
        query=GetTenantDetails,
        help="Show a tenant.",
        show=lambda view, _: show_tenant(view),
    ),
    QueryVerb(
        group="tenant",
        name="list",
        query=ListTenants,
        help="List tenants, a page at a time.",
        show=lambda page, _: show_tenants(page),
        fields_help={
            "status": "Only tenants in this status (active, suspended, deleted).",
            "sort": "name, created_at or last_updated.",
            "descending": "Sort descending.",
            **_PAGING_HELP,
        },
    ),
    QueryVerb(
        group="tenant",
        name="activity",
        query=GetTenantActivity,
        help="Count a tenant's events by type.",
        show=lambda view, _: show_activity(view),
    ),
    QueryVerb(
        group="user",
        name="get",
        query=GetUser,
        help="Show a user of a tenant.",
        show=lambda view, _: show_user(view),
    ),
    QueryVerb(
        group="user",
        name="list",
        query=ListTenantUsers,
        help="List a tenant's users by email, a page at a time.",
        show=show_users,
        fields_help={
            "status": "Only users in this status (active, deactivated).",
            "role": "Only users with this role.",
            **_PAGING_HELP,
        },
    ),
)

# Option names that differ from the field's (``--field-name``).
OPTION_NAMES: Final = {"descending": "--desc"}

tenant_queries = typer.Typer(help="Tenant queries (read models).")
user_queries = typer.Typer(help="User queries (read models).")
QUERY_APPS: Final = {"tenant": tenant_queries, "user": user_queries}


def ask(
    query_type: type[Query[Any]], data: dict[str, Any], as_principal: str | None = None
) -> tuple[Query[Any], BaseModel]:
    """The query built from ``data``, and its answer for the principal ``--as`` names (else
    ``ACCI_PRINCIPAL``). Errors, a malformed query's and a refused one's too, exit 1."""
    setup()
    from acci.workers.runtime import open_query_bus

    principal = cli_principal(as_principal)

    async def main() -> tuple[Query[Any], BaseModel]:
        # Built here, so that a malformed query is reported like every other query error.
        query = query_type(**data)
        async with open_query_bus(get_settings(), pool_max_size=2, principal=principal) as bus:
            return query, await bus.ask(query)

    return run(main())


def _register(verb: QueryVerb) -> None:
    fields = field_parameters(
        verb.query, names=OPTION_NAMES, help=verb.fields_help, exclude={"consistent_with"}
    )
    common = [
        keyword("as_json", JsonOption, False),
        keyword("consistent_with", ConsistentOption, None),
        keyword("as_principal", AsOption, None),
    ]

    def run_verb(values: dict[str, Any]) -> None:
        data = model_data(fields, values)
        data["consistent_with"] = values["consistent_with"]
        query, result = ask(verb.query, data, values["as_principal"])
        if values["as_json"]:
            typer.echo(result.model_dump_json(indent=2))
        else:
            verb.show(result, query)

    parameters = [f.parameter for f in fields] + common
    QUERY_APPS[verb.group].command(verb.name, help=verb.help)(generated_verb(parameters, run_verb))


for _verb in QUERY_VERBS:
    _register(_verb)
