"""Finding and installing applications: the ``acci.apps`` entry points and ``ACCI_APPS``.

Every process that runs commands, projections or queries (``acci worker``, ``acci dev``, the CLI)
installs them before it builds anything from the catalogue, so each sees the same commands,
projections and queries. A broken application stops the process at start with one message that
names it (``ApplicationLoadError``), never a half-installed set.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Final

from acci.readmodels.application import ApplicationDeclarationError
from acci.readmodels.installed import Application, install, installed

ENTRY_POINT_GROUP: Final = "acci.apps"


class ApplicationLoadError(Exception):
    """An application could not be found, imported or installed."""

    code = "application"


def load_applications(names: Iterable[str] = ()) -> list[Application]:
    """Install every application registered under ``acci.apps`` and each of ``names``
    (``package.module`` for its ``app``, or ``package.module:attribute``); returns every
    installed application, the built-in one first. Installing twice changes nothing."""
    found: list[tuple[str, Application]] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        where = f"entry point {point.name!r} ({point.value})"
        try:
            loaded = point.load()
        except Exception as e:
            raise ApplicationLoadError(f"{where} cannot be imported: {_describe(e)}") from e
        found.append((where, _application(loaded, where)))
    for name in (n.strip() for n in names):
        if name:
            found.append((f"ACCI_APPS entry {name!r}", _imported(name)))
    for where, app in found:
        try:
            install(app)
        except ApplicationDeclarationError as e:
            raise ApplicationLoadError(f"{where}: {e}") from e
    return installed()


def app_names(setting: str) -> list[str]:
    """The import paths in an ``ACCI_APPS`` value (comma-separated)."""
    return [name.strip() for name in setting.split(",") if name.strip()]


def _imported(name: str) -> Application:
    where = f"ACCI_APPS entry {name!r}"
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ApplicationLoadError(f"{where} cannot be imported: {_describe(e)}") from e
    try:
        loaded = getattr(module, attribute or "app")
    except AttributeError:
        raise ApplicationLoadError(
            f"{where}: module {module_name!r} has no attribute {attribute or 'app'!r}"
        ) from None
    return _application(loaded, where)


def _application(loaded: object, where: str) -> Application:
    if not isinstance(loaded, Application):
        raise ApplicationLoadError(f"{where} is a {type(loaded).__name__}, not an acci.Application")
    return loaded


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
