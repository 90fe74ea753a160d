"""What every ``acci`` command shares: options, logging set-up, and error reporting."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from acci.domain.errors import CommandError
from acci.eventstore.errors import EventStoreError
from acci.readmodels.errors import QueryError
from acci.workers.apps import ApplicationLoadError, app_names, load_applications
from acci.workers.codec import CodecError
from acci.workers.logs import configure_logging, redact
from acci.workers.settings import ENV_PREFIX, get_settings

if TYPE_CHECKING:
    from acci.eventstore.records import Position

T = TypeVar("T")

_SETTINGS_FIELD = re.compile(r'field "(\w+)"')

USAGE_EXIT: int = 2

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def checked_tenant(value: str | None) -> str | None:
    """An option's tenant id, checked as it is read: a malformed one is a usage error (exit
    status 2) before anything starts (a Typer callback)."""
    from acci.domain.identifiers import validate_tenant_id

    if value is None:
        return None
    try:
        return validate_tenant_id(value)
    except CommandError as e:
        raise typer.BadParameter(str(e)) from None


def parse_position(text: str | None, option: str) -> Position | None:
    """An option's ``TX:GP`` position (None if not given); a malformed one is a usage error."""
    from acci.eventstore.records import Position

    if text is None:
        return None
    try:
        return Position.parse(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None


def setup() -> None:
    """JSON logs on stderr at the configured level; the configured applications installed (a
    broken one is one ``error (application): …`` line and exit status 1)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        load_applications(app_names(settings.apps))
    except ApplicationLoadError as e:
        typer.echo(f"error (application): {e}", err=True)
        raise typer.Exit(1) from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; typed errors become one line on stderr and exit status 1."""
    try:
        return asyncio.run(coro)
    except (CommandError, QueryError, EventStoreError) as e:
        kind = getattr(e, "code", None) or type(e).__name__
        typer.echo(f"error ({kind}): {e}", err=True)
        raise typer.Exit(1) from None
    except CodecError as e:
        typer.echo(f"error (configuration): {e}", err=True)
        raise typer.Exit(1) from None
    except RuntimeError as e:
        # The Temporal client reports an unreachable server as a RuntimeError.
        if "connect" not in str(e).lower():
            raise
        address = get_settings().temporal_address
        typer.echo(
            f"error (unavailable): Temporal is not reachable at {address}: {e}\n"
            "Start it with `acci dev` (or point ACCI_TEMPORAL_ADDRESS at your server).",
            err=True,
        )
        raise typer.Exit(1) from None


def invoke(app: typer.Typer, args: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status; a usage error is one line and status 2.

    Typer's standalone mode would draw usage errors as a boxed panel with the usage above it;
    every other ``acci`` error is one ``error (<kind>): <message>`` line, so these are too.
    """
    try:
        result = app(args, prog_name="acci", standalone_mode=False)
    except NoArgsIsHelpError as e:
        # A group run without a subcommand: its help (already printed by some Typer versions).
        if message := e.format_message().strip():
            typer.echo(message, err=True)
        return USAGE_EXIT
    except typer.TyperException as e:
        typer.echo(f"error (usage): {usage_message(e)}", err=True)
        return USAGE_EXIT
    except typer.Abort:
        typer.echo("error (aborted): aborted", err=True)
        return 1
    except (ValidationError, SettingsError) as e:
        typer.echo(f"error (configuration): {settings_message(e)}", err=True)
        return 1
    except Exception as e:  # a failure no verb expected: one line still, and never a password
        logging.getLogger(__name__).debug("unexpected failure", exc_info=True)
        code = getattr(e, "code", None)
        # One line: the first (PostgreSQL's errors go on with the statement and a caret).
        first = (str(e).strip().splitlines() or [""])[0]
        said = redact(first) if isinstance(code, str) else f"{type(e).__name__}: {redact(first)}"
        typer.echo(f"error ({code if isinstance(code, str) else 'internal'}): {said}", err=True)
        return 1
    # Without standalone mode Typer returns the status of a raised typer.Exit, or the
    # command's own return value (None: every command prints rather than returns).
    return result if isinstance(result, int) else 0


def settings_message(error: ValidationError | SettingsError) -> str:
    """What is wrong with the settings, by environment variable, without the values given (a
    value may be a secret): ``ACCI_METRICS_PORT: Input should be a valid integer``."""
    if isinstance(error, SettingsError):  # a list or mapping setting that is not JSON
        named = _SETTINGS_FIELD.search(str(error))
        if named is None:
            return str(error)
        example = """'["a", "b"]'"""
        return f"{ENV_PREFIX}{named[1].upper()}: is not JSON (this setting takes JSON: {example})"
    problems = []
    for e in error.errors(include_url=False, include_input=False):
        field = next((str(part) for part in e["loc"] if isinstance(part, str)), "")
        where = f"{ENV_PREFIX}{field.upper()}: " if field else ""
        problems.append(where + e["msg"].removeprefix("Value error, "))
    return "; ".join(problems) or "invalid settings"


def usage_message(error: typer.TyperException) -> str:
    """A usage error's message on one line, with the help to read for the command."""
    message = " ".join(error.format_message().split()).rstrip(".")
    ctx = error.ctx if isinstance(error, UsageError) else None
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message += f"; see '{ctx.command_path} --help'"
    return message
