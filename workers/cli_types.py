"""The command and query types ``acci command`` and ``acci query`` reach, by name, and their list.

Every installed application's types are here once the applications are installed
(``cli_support.setup``): commands from the domain catalogue, queries from the applications'
declarations (the types the query bus answers). A command type's name is its ``command_type``; a
query type's is its class name, qualified by its application's (``invoicing.GetItem``) only when
two applications declare query types of one name.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer
from pydantic import BaseModel

from acci.domain.catalogue import AGGREGATES, owner
from acci.domain.errors import shown
from acci.readmodels.application import queries_of
from acci.readmodels.errors import QueryValidationError
from acci.readmodels.installed import installed
from acci.readmodels.queries import Query
from acci.workers.cli_fields import TENANT_FIELD


@dataclass(frozen=True, slots=True)
class TypeEntry:
    """One command or query type as ``--list`` shows it."""

    name: str
    application: str
    model: type[BaseModel]
    # What else a user needs to know of the type (its aggregate; what a query answers with).
    about: Mapping[str, Any]

    @property
    def description(self) -> str:
        """The first line of the type's own docstring."""
        # The class's own: a subclass without a docstring must not show its base's.
        text = inspect.cleandoc(self.model.__dict__.get("__doc__") or "")
        return text.splitlines()[0].replace("``", "") if text else ""

    def shown(self) -> dict[str, Any]:
        """The entry as ``--list --json`` prints it, with the type's JSON schema."""
        return {
            "type": self.name,
            "application": self.application,
            **self.about,
            "description": self.description,
            "schema": self.model.model_json_schema(),
        }


def command_entries() -> list[TypeEntry]:
    """Every installed command type, sorted by name."""
    entries = [
        TypeEntry(
            name=command.command_type,
            application=owner(command.command_type) or "",
            model=command,
            about={"aggregate": aggregate.aggregate_type},
        )
        for aggregate in AGGREGATES.values()
        for command in aggregate.command_types
    ]
    return sorted(entries, key=lambda e: e.name)


def query_entries() -> list[TypeEntry]:
    """Every query type an installed application answers, sorted by name."""
    entries = [
        TypeEntry(
            name=name,
            application=app,
            model=query,
            about={
                "in_tenant": is_tenant_query(query),
                "answer": query.result_type.__name__,
                "reads": list(query.projections),
            },
        )
        for name, (app, query) in _query_types().items()
    ]
    return sorted(entries, key=lambda e: e.name)


def query_type(name: str) -> type[Query[Any]]:
    """The installed query type of this name; ``QueryValidationError`` if there is none."""
    types = _query_types()
    if name not in types:
        known = ", ".join(sorted(types))
        raise QueryValidationError(f"unknown query type {shown(name)}; known: {known}")
    return types[name][1]


def _query_types() -> dict[str, tuple[str, type[Query[Any]]]]:
    """Every installed query type by its name: its application and its class."""
    declared = [(app.name, query) for app in installed() for query in queries_of(app)]
    counts = Counter(query.__name__ for _, query in declared)
    return {
        query.__name__ if counts[query.__name__] == 1 else f"{app}.{query.__name__}": (app, query)
        for app, query in declared
    }


def is_tenant_query(query: type[Query[Any]]) -> bool:
    """Whether the query is asked in one tenant (it has a ``tenant_id``)."""
    return TENANT_FIELD in query.model_fields


def show_entries(entries: Sequence[TypeEntry], *, kind: str, as_json: bool) -> None:
    """The types as a table (name, application, description), or as JSON with their schemas."""
    if as_json:
        typer.echo(json.dumps([entry.shown() for entry in entries], indent=2))
        return
    header = (f"{kind} type", "application", "description")
    rows = [header, *((e.name, e.application, e.description) for e in entries)]
    name_width = max(len(row[0]) for row in rows)
    app_width = max(len(row[1]) for row in rows)
    for name, application, description in rows:
        typer.echo(f"{name:<{name_width}}  {application:<{app_width}}  {description}".rstrip())
