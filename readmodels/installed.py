"""The installed applications, the built-in one first: what the read side runs and answers.

Importing this module installs ACCI's own tenancy application; ``acci.workers.apps`` installs
the others a process is configured with before it builds its projections and query bus.
"""

from __future__ import annotations

from typing import Any

from acci.domain.registry import EventRegistry
from acci.domain.registry import registry as default_registry
from acci.readmodels import application
from acci.readmodels.application import (
    Application,
    HandlerFactory,
    ReadModel,
    install,
    installed,
    read_model_tables,
    read_models,
)
from acci.readmodels.errors import UnknownReadModelError
from acci.readmodels.projections import Projection
from acci.readmodels.queries import Query
from acci.readmodels.tenancy import TENANCY

install(TENANCY)

__all__ = [
    "Application",
    "default_projections",
    "install",
    "installed",
    "projection_names",
    "query_handlers",
    "read_model",
    "read_model_tables",
    "read_models",
]


def default_projections(*, registry: EventRegistry = default_registry) -> list[Projection]:
    """One instance of every installed application's projections."""
    return [cls(registry=registry) for cls in application.projection_classes()]


def projection_names() -> list[str]:
    """The names of every installed application's projections."""
    return [cls.name for cls in application.projection_classes()]


def known_projection(name: str) -> str:
    """``name`` if an installed application has that projection; ``UnknownReadModelError``
    naming those there are otherwise."""
    names = projection_names()
    if name not in names:
        raise UnknownReadModelError(
            f"no projection {name!r}; the installed projections are {sorted(names)}"
        )
    return name


def query_handlers() -> dict[type[Query[Any]], HandlerFactory]:
    """Every installed application's query types and their handler factories."""
    return application.query_handlers()


def read_model(name: str) -> ReadModel:
    """The installed read model called ``name``; ``UnknownReadModelError`` names those there are."""
    found = {m.name: m for m in read_models()}
    if name not in found:
        raise UnknownReadModelError(
            f"no read model {name!r}; the installed read models are {sorted(found)}"
        )
    return found[name]
