"""``acci schedules …``: create or update ACCI's Temporal Schedules from the settings, list them.

The same Schedules show in the Web UI (Schedules) and under ``temporal schedule …``; see
``workers/schedules.py`` for what each one runs.
"""

from __future__ import annotations

import json

import typer

from acci.workers.cli_support import JsonOption, run, setup
from acci.workers.settings import get_settings

schedules_app = typer.Typer(
    help="Temporal Schedules (snapshots, backups, verify): apply from the settings, list.",
    no_args_is_help=True,
)


@schedules_app.command("apply")
def apply() -> None:
    """Create every ACCI Schedule, or update it to the current settings (idempotent)."""
    setup()

    async def main() -> None:
        from acci.workers.schedules import apply_schedules
        from acci.workers.temporal_client import connect

        settings = get_settings()
        for applied in await apply_schedules(await connect(settings), settings):
            typer.echo(f"{applied.schedule_id}: {applied.outcome}")

    run(main())


@schedules_app.command("list")
def list_schedules(as_json: JsonOption = False) -> None:
    """Each ACCI Schedule: paused or not, when it runs, its next and last runs."""
    setup()

    async def main() -> None:
        from acci.workers.schedules import describe_schedules
        from acci.workers.temporal_client import connect

        settings = get_settings()
        found = await describe_schedules(await connect(settings), settings)
        if as_json:
            typer.echo(json.dumps(found, indent=2))
            return
        for s in found:
            if not s["exists"]:
                typer.echo(f"{s['schedule_id']}: not created (run `acci schedules apply`)")
                continue
            when = ", ".join(s["cron"]) or ", ".join(f"every {n} s" for n in s["every_seconds"])
            state = "paused" if s["paused"] else "active"
            typer.echo(
                f"{s['schedule_id']}: {state}, {when} ({s['time_zone'] or 'UTC'}),"
                f" next {s['next_runs'][0] if s['next_runs'] else '-'},"
                f" last {s['last_run'] or '-'}, {s['runs']} run(s)"
            )

    run(main())
