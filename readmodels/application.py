"""Applications: one declaration of a domain and its read side, installed all or nothing.

An application is a package that declares, in one ``Application`` value, its aggregates (with
their commands), the rules between aggregates, its event types, its projections with the
read-model tables they write (and each table's DDL), and its queries with their handlers.
``install`` checks the declaration against what is installed already and adds it to the tables
every part of ACCI reads: the domain catalogue (commands), the event registry (events), and the
lists here (projections, read models, queries). ACCI's own tenants and users are the first
application (``readmodels/tenancy.py``); others are found by ``acci.workers.apps``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg_pool import AsyncConnectionPool

from acci.domain import catalogue
from acci.domain.aggregate import EventSourced
from acci.domain.events import DomainEvent
from acci.domain.identifiers import TYPE_NAME_PATTERN
from acci.domain.registry import Upcaster, registry
from acci.domain.rules import RelatedAggregate
from acci.readmodels.projections import Projection
from acci.readmodels.queries import Query

QueryHandler = Callable[[Any], Awaitable[Any]]
HandlerFactory = Callable[[AsyncConnectionPool], QueryHandler]
"""Given the read models' pool, the coroutine function that answers one query type."""

_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]{0,99}")
_TABLE: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")


class ApplicationDeclarationError(ValueError):
    """An application's declaration is broken or conflicts with one installed before; nothing
    of it was installed. The message names the application and the conflict."""


@dataclass(frozen=True)
class Application:
    """What an application brings: its domain, its events, its read side.

    ``read_models`` maps each table (in the ``read_models`` schema) its projections write to the
    SQL that creates it, run at every start, so it must be idempotent (``CREATE TABLE IF NOT
    EXISTS read_models.<table> …``); None for a table ACCI's own migrations create.
    ``upcasters`` maps ``(event type, version)`` to the function that turns that version's
    stored data into the next version's. ``queries`` maps each query type to a factory that,
    given the read models' pool, returns the coroutine function answering it.
    """

    name: str
    aggregates: Sequence[type[EventSourced[Any, Any]]] = ()
    rules: Sequence[RelatedAggregate] = ()
    events: Sequence[type[DomainEvent]] = ()
    upcasters: Mapping[tuple[str, int], Upcaster] = field(default_factory=dict)
    projections: Sequence[type[Projection]] = ()
    read_models: Mapping[str, str | None] = field(default_factory=dict)
    queries: Mapping[type[Query[Any]], HandlerFactory] = field(default_factory=dict)


_INSTALLED: Final[dict[str, Application]] = {}
_EVENT_OWNERS: Final[dict[str, str]] = {}


def installed() -> list[Application]:
    """Every installed application, in the order they were installed (the built-in one first)."""
    return list(_INSTALLED.values())


def projection_classes() -> list[type[Projection]]:
    """Every installed application's projections."""
    return [p for app in _INSTALLED.values() for p in app.projections]


def query_handlers() -> dict[type[Query[Any]], HandlerFactory]:
    """Every installed application's query types and their handler factories."""
    return {q: f for app in _INSTALLED.values() for q, f in app.queries.items()}


def read_model_tables() -> dict[str, tuple[str, str | None]]:
    """Every read-model table an installed application declares: its application and DDL."""
    return {t: (app.name, ddl) for app in _INSTALLED.values() for t, ddl in app.read_models.items()}


def install(app: Application) -> None:
    """Check ``app`` and add it everywhere, or raise ``ApplicationDeclarationError`` having
    added nothing. Installing the same declaration again changes nothing."""
    if _INSTALLED.get(app.name) is app:
        return
    if not isinstance(app.name, str) or not _NAME.fullmatch(app.name):
        raise ApplicationDeclarationError(
            f"application name {app.name!r} must be lower-case letters, digits, '_', '.', '-'"
        )
    problem = _problem(app)
    if problem is not None:
        raise ApplicationDeclarationError(f"application {app.name!r}: {problem}")
    try:
        catalogue.add(app.name, app.aggregates, app.rules)
    except catalogue.CatalogueConflictError as e:
        raise ApplicationDeclarationError(f"application {app.name!r}: {e}") from e
    for event in app.events:
        if not registry.is_known(event.event_type):
            registry.register(event)
        _EVENT_OWNERS[event.event_type] = app.name
    for (event_type, version), upcaster in sorted(app.upcasters.items()):
        if not registry.has_upcaster(event_type, version):
            registry.register_upcaster(event_type, version)(upcaster)
    _INSTALLED[app.name] = app


def _problem(app: Application) -> str | None:
    """What is wrong with ``app`` on its own or beside the installed ones (None: nothing)."""
    if app.name in _INSTALLED:
        return "another application of this name is installed already"
    return (
        _events_problem(app)
        or _read_models_problem(app)
        or _projections_problem(app)
        or _queries_problem(app)
    )


def _events_problem(app: Application) -> str | None:
    for event in app.events:
        event_type = event.__dict__.get("event_type")
        if not isinstance(event_type, str) or not re.fullmatch(TYPE_NAME_PATTERN, event_type):
            return (
                f"event class {event.__qualname__} declares no event_type of its own matching"
                f" {TYPE_NAME_PATTERN}"
            )
        version = event.__dict__.get("event_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            return f"event {event_type!r} ({event.__qualname__}) declares no event_version >= 1"
        owner = _EVENT_OWNERS.get(event_type)
        if owner is not None:
            return f"event type {event_type!r} is registered by application {owner!r} already"
        if registry.is_known(event_type) and registry.event_class(event_type) is not event:
            other = registry.event_class(event_type).__qualname__
            return f"event type {event_type!r} is registered already (by {other})"
    versions = {e.event_type: e.event_version for e in app.events}
    for event_type, version in app.upcasters:
        declared = versions.get(event_type)
        if declared is None:
            return (
                f"an upcaster is declared for {event_type!r}, not one of the application's events"
            )
        if not 1 <= version < declared:
            return (
                f"the upcaster of {event_type!r} from version {version} must be from 1 to"
                f" {declared - 1} (the current version is {declared})"
            )
    for event_type, current in versions.items():
        missing = [
            v
            for v in range(1, current)
            if (event_type, v) not in app.upcasters and not registry.has_upcaster(event_type, v)
        ]
        if missing:
            # A stored event of such a version could never be read (its projection would park it).
            return f"event {event_type!r} is at version {current}, with no upcaster from {missing}"
    return None


def _read_models_problem(app: Application) -> str | None:
    tables = read_model_tables()
    for table, ddl in app.read_models.items():
        if not _TABLE.fullmatch(table):
            return f"read-model table name {table!r} is not a lower-case SQL identifier"
        if table in tables:
            return f"read-model table {table!r} is declared by application {tables[table][0]!r}"
        if ddl is not None and f"read_models.{table}" not in ddl:
            return f"the DDL of read-model table {table!r} does not create read_models.{table}"
    return None


def _projections_problem(app: Application) -> str | None:
    names = {p.name: a.name for a in _INSTALLED.values() for p in a.projections}
    for projection in app.projections:
        owner = names.get(projection.name)
        if owner is not None:
            return f"projection {projection.name!r} is declared by application {owner!r}"
        names[projection.name] = app.name
        undeclared = sorted(set(projection.tables) - set(app.read_models))
        if undeclared:
            return (
                f"projection {projection.name!r} writes read-model table(s) {undeclared}, which"
                " the application does not declare in read_models"
            )
    return None


def _queries_problem(app: Application) -> str | None:
    known = query_handlers()
    projections = {p.name for p in (*projection_classes(), *app.projections)}
    for query in app.queries:
        if query in known:
            return f"query type {query.__name__} is answered by another application already"
        missing = sorted(set(query.projections) - projections)
        if missing:
            return f"query type {query.__name__} reads projection(s) {missing}, which none declares"
    return None
