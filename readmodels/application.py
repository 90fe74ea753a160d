"""Applications: one declaration of a domain and its read side, installed all or nothing.

An application is a package that declares, in one ``Application`` value, its aggregates (with
their commands), the rules between aggregates, its event types, and its read models (each a
``ReadModel``: row types, DDL per version, projection, queries; ``readmodels/read_model.py``).
``install`` checks the declaration against what is installed already and adds it to the tables
every part of ACCI reads: the domain catalogue (commands), the event registry (events), and the
lists here (projections, read models, queries). ACCI's own tenants and users are the first
application (``readmodels/tenancy/``); others are found by ``acci.workers.apps``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from acci.domain import catalogue
from acci.domain.aggregate import EventSourced
from acci.domain.events import DomainEvent
from acci.domain.identifiers import TYPE_NAME_PATTERN
from acci.domain.registry import Upcaster, registry
from acci.domain.rules import RelatedAggregate
from acci.readmodels.projections import Projection
from acci.readmodels.queries import Query
from acci.readmodels.read_model import HandlerFactory, QueryHandler, ReadModel

__all__ = ["Application", "HandlerFactory", "QueryHandler", "ReadModel", "install", "installed"]

_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]{0,99}")


class ApplicationDeclarationError(ValueError):
    """An application's declaration is broken or conflicts with one installed before; nothing
    of it was installed. The message names the application and the conflict."""


@dataclass(frozen=True)
class Application:
    """What an application brings: its domain, its events, its read side.

    ``upcasters`` maps ``(event type, version)`` to the function that turns that version's
    stored data into the next version's. ``read_models`` are its read models, each with its own
    queries; ``queries`` adds queries that read several of them (a query type to a factory
    that, given the read models' pool, returns the coroutine function answering it).
    """

    name: str
    aggregates: Sequence[type[EventSourced[Any, Any]]] = ()
    rules: Sequence[RelatedAggregate] = ()
    events: Sequence[type[DomainEvent]] = ()
    upcasters: Mapping[tuple[str, int], Upcaster] = field(default_factory=dict)
    read_models: Sequence[ReadModel] = ()
    queries: Mapping[type[Query[Any]], HandlerFactory] = field(default_factory=dict)


_INSTALLED: Final[dict[str, Application]] = {}
_EVENT_OWNERS: Final[dict[str, str]] = {}


def installed() -> list[Application]:
    """Every installed application, in the order they were installed (the built-in one first)."""
    return list(_INSTALLED.values())


def read_models() -> list[ReadModel]:
    """Every installed application's read models."""
    return [m for app in _INSTALLED.values() for m in app.read_models]


def projection_classes() -> list[type[Projection]]:
    """Every installed application's projections (one per read model)."""
    return [m.projection for m in read_models()]


def queries_of(app: Application) -> dict[type[Query[Any]], HandlerFactory]:
    """``app``'s query types (its read models' and its own) and their handler factories."""
    return {**{q: f for m in app.read_models for q, f in m.queries.items()}, **app.queries}


def query_handlers() -> dict[type[Query[Any]], HandlerFactory]:
    """Every installed application's query types and their handler factories."""
    return {q: f for app in _INSTALLED.values() for q, f in queries_of(app).items()}


def read_model_tables() -> dict[str, str]:
    """Every read-model table an installed application declares, to its read model."""
    return {t: m.name for m in read_models() for t in m.tables}


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
    return _events_problem(app) or _read_models_problem(app) or _queries_problem(app)


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
    tables = {
        t: (a.name, m.name) for a in _INSTALLED.values() for m in a.read_models for t in m.tables
    }
    names = {m.name: a.name for a in _INSTALLED.values() for m in a.read_models}
    for model in app.read_models:
        if not isinstance(model, ReadModel):
            return f"read_models holds {model!r}, not a ReadModel"
        problem = model.problem()
        if problem is not None:
            return problem
        if model.name in names:
            return f"read model {model.name!r} is declared by application {names[model.name]!r}"
        names[model.name] = app.name
        for table in model.tables:
            if table in tables:
                owner, other = tables[table]
                return (
                    f"read-model table {table!r} is declared by read model {other!r} of"
                    f" application {owner!r}"
                )
            tables[table] = (app.name, model.name)
    return None


def _queries_problem(app: Application) -> str | None:
    known = query_handlers()
    projections = {p.name for p in projection_classes()} | {m.name for m in app.read_models}
    for query in queries_of(app):
        if query in known:
            return f"query type {query.__name__} is answered by another application already"
        missing = sorted(set(query.projections) - projections)
        if missing:
            return f"query type {query.__name__} reads projection(s) {missing}, which none declares"
    return None
