"""``acci codec-server``: the remote codec endpoint (workers/codec_server.py) on its own, for
the full stack's Web UI or ``temporal workflow show --codec-endpoint`` (``acci dev`` serves
one itself when the payload codec is on)."""

from __future__ import annotations

import asyncio
import signal
from contextlib import ExitStack
from typing import Annotated

import typer

from acci.workers.cli_support import run, setup
from acci.workers.settings import Settings, get_settings

UNAVAILABLE_EXIT = 1


def codec_server(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Interface to listen on (default: ACCI_CODEC_SERVER_HOST)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default: ACCI_CODEC_SERVER_PORT; 0: any)."
        ),
    ] = None,
) -> None:
    """Decode (and encode) Temporal payloads for the Web UI and the Temporal CLI, until
    SIGINT/SIGTERM. Needs ACCI_MASTER_KEY (and any ACCI_PREVIOUS_MASTER_KEYS); asks for
    ACCI_CODEC_AUTH_TOKEN as a Bearer token when it is set."""
    setup()
    from acci.workers.codec_server import codec_endpoint, serving_codec

    settings = get_settings()
    overrides = {"codec_server_host": host, "codec_server_port": port}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})

    async def main() -> None:
        endpoint = codec_endpoint(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with ExitStack() as stack:
            try:
                bound = stack.enter_context(
                    serving_codec(endpoint, settings.codec_server_host, settings.codec_server_port)
                )
            except OSError as e:
                typer.echo(f"error (unavailable): the codec endpoint cannot listen: {e}", err=True)
                raise typer.Exit(UNAVAILABLE_EXIT) from None
            typer.echo(describe(settings, f"http://{settings.codec_server_host}:{bound}"))
            await stop.wait()

    run(main())


def describe(settings: Settings, url: str) -> str:
    """The endpoint's address and how to use it, as ``acci codec-server`` and ``acci dev``
    print it (the token's value never: only whether one is asked for)."""
    from acci.workers.codec_server import auth_token

    token = auth_token(settings) is not None
    auth = ' --codec-auth "Bearer $ACCI_CODEC_AUTH_TOKEN"' if token else ""
    return (
        f"  codec endpoint      {url} (token {'required' if token else 'not required'},"
        f" master key id {settings.master_key_id})\n"
        f"                      temporal workflow show --codec-endpoint {url}{auth} -w <id>"
    )


def open_dev_codec(stack: ExitStack, settings: Settings) -> str | None:
    """For ``acci dev``: serve the codec endpoint on ``stack`` when the payload codec is on,
    and return its URL for the Web UI (None when the codec is off). A port already taken is one
    ``error (unavailable)`` line and exit status 1, as the dev server's own ports are."""
    if not settings.payload_codec:
        return None
    from acci.workers.codec_server import codec_endpoint, serving_codec

    endpoint = codec_endpoint(settings)
    host, port = settings.codec_server_host, settings.codec_server_port
    try:
        bound = stack.enter_context(serving_codec(endpoint, host, port))
    except OSError as e:
        typer.echo(
            f"error (unavailable): the codec endpoint cannot listen on {host}:{port} ({e});"
            " set ACCI_CODEC_SERVER_PORT to a free port",
            err=True,
        )
        raise typer.Exit(UNAVAILABLE_EXIT) from None
    return f"http://{host}:{bound}"
