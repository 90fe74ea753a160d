"""What every ``acci`` command shares: options, logging set-up, and error reporting."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from domain.errors import CommandError, QueryError
from eventstore.errors import EventStoreError
from workers.logs import configure_logging
from workers.settings import get_settings

T = TypeVar("T")

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def setup() -> None:
    """JSON logs on stderr at the configured level."""
    configure_logging(get_settings().log_level)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; typed errors become one line on stderr and exit status 1."""
    try:
        return asyncio.run(coro)
    except (CommandError, QueryError, EventStoreError) as e:
        kind = getattr(e, "code", None) or type(e).__name__
        typer.echo(f"error ({kind}): {e}", err=True)
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
