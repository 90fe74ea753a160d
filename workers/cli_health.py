"""``acci health``: is ACCI ready to work? Every dependency and projection, with the latency
and the reason of each check (workers/health.py), and the dev server's history file size."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from acci.workers.cli_support import JsonOption, run, setup
from acci.workers.settings import get_settings

NOT_READY_EXIT = 1


def health(as_json: JsonOption = False) -> None:
    """Check PostgreSQL, the event store, Redis, RabbitMQ, Temporal and every projection.

    Exit status 0 when all are ok, 1 when any is not (the lines marked DOWN say why).
    """
    setup()
    from acci.workers.devserver import HISTORY_DB_NAME
    from acci.workers.health import readiness

    settings = get_settings()
    report = run(readiness(settings))
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        typer.echo("ready" if report.ready else f"NOT READY: {', '.join(report.failing)}")
        for c in report.checks:
            mark = "ok  " if c.ok else "DOWN"
            typer.echo(f"{mark} {c.name:<28} {c.latency_ms:>8.1f} ms  {c.detail}")
        if report.dev_history_bytes is not None:
            path = Path(settings.data_dir) / HISTORY_DB_NAME
            size = report.dev_history_bytes / 1024 / 1024
            retention = f"closed runs kept {settings.dev_retention_hours}h by `acci dev`"
            typer.echo(f"\ndev server history   {size:.1f} MiB ({path}; {retention})")
    if not report.ready:
        raise typer.Exit(NOT_READY_EXIT)
