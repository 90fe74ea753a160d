"""The ``acci`` command line: every verb put together, and the process verbs of its own
(worker, dev, demo, db, cache, check-services), with the console-script entry point.

The tenant and user verbs come from workers/cli_commands.py and cli_queries.py, ``events`` and
``aggregate`` from cli_history.py, the projection verbs from cli_projections.py,
``publish-events`` from cli_events_publish.py, ``health`` from cli_health.py,
``migrate-events`` from cli_migrate.py, ``audit`` from cli_audit.py, and
``command`` and ``query`` (any installed application's types, by name) from cli_generic.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from acci.workers.cli_audit import audit
from acci.workers.cli_backup import backup_app, verify_store
from acci.workers.cli_codec import codec_server, open_dev_codec
from acci.workers.cli_codec import describe as describe_codec
from acci.workers.cli_commands import COMMAND_APPS
from acci.workers.cli_events_publish import publish_events
from acci.workers.cli_generic import register as register_generic_verbs
from acci.workers.cli_health import health
from acci.workers.cli_history import aggregate, events
from acci.workers.cli_keys import keys_app, shred_tenant
from acci.workers.cli_migrate import migrate_events
from acci.workers.cli_projections import projections_app
from acci.workers.cli_queries import QUERY_APPS
from acci.workers.cli_readmodels import readmodels_app
from acci.workers.cli_schedules import schedules_app
from acci.workers.cli_support import JsonOption, invoke, run, setup
from acci.workers.devserver import DEV_LOG_NAME, TEMPORAL_LOG_NAME
from acci.workers.logs import configure_logging
from acci.workers.settings import Settings, get_settings
from acci.workers.tracing import shutdown_tracing
from acci.workers.urls import where, without_password

if TYPE_CHECKING:
    from acci.workers.demo import DevSetup
    from acci.workers.devserver import DevServer

app = typer.Typer(
    help="ACCI: a durable CQRS / event-sourcing platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The event-store database.", no_args_is_help=True)
cache_app = typer.Typer(help="The Redis query cache.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(cache_app, name="cache")
for _group, _commands in COMMAND_APPS.items():
    # `acci tenant` holds the tenant's commands and its queries, `acci user` the user's.
    if _group in QUERY_APPS:
        _commands.add_typer(QUERY_APPS[_group])
    app.add_typer(_commands, name=_group)
COMMAND_APPS["tenant"].command("shred")(shred_tenant)
app.add_typer(keys_app, name="keys")
app.add_typer(projections_app, name="projections")
app.add_typer(readmodels_app, name="readmodels")
app.add_typer(backup_app, name="backup")
app.command("verify")(verify_store)
app.add_typer(schedules_app, name="schedules")
app.command("publish-events")(publish_events)
app.command("migrate-events")(migrate_events)
app.command("codec-server")(codec_server)
app.command("audit", help=" ".join((audit.__doc__ or "").split()))(audit)
register_generic_verbs(app)  # `acci command` and `acci query`


@app.command("check-services")
def check_services() -> None:
    """Check that PostgreSQL, Redis and RabbitMQ answer; say how to start any that does not."""
    from acci.workers.checks import check_services as run_checks
    from acci.workers.checks import start_hint

    results = run_checks(get_settings())
    for result in results:
        mark = "ok  " if result.ok else "DOWN"
        typer.echo(f"{mark} {result.name:<10} {result.detail}")
    down = [r.name for r in results if not r.ok and not r.refused]
    refused = [r.name for r in results if r.refused]
    if refused:
        typer.echo(
            f"\n{', '.join(refused)} answered but refused the login (or the database or vhost"
            " named): check the user, password and name in its URL (ACCI_DATABASE_URL,"
            " ACCI_REDIS_URL, ACCI_RABBITMQ_URL).",
            err=True,
        )
    if down:
        typer.echo(
            f"\n{', '.join(down)} not answering. Start the local service(s) (README, 'Services'),"
            f" or run: {start_hint()}",
            err=True,
        )
    if down or refused:
        raise typer.Exit(2)


app.command("health")(health)
app.command("events")(events)
app.command("aggregate")(aggregate)


@db_app.command("migrate")
def db_migrate() -> None:
    """Create the database if missing and apply pending migrations (safe to run twice)."""
    setup()
    from acci.eventstore.db import create_pool, ensure_database
    from acci.readmodels.schema import prepare_database

    async def main() -> None:
        settings = get_settings()
        url = settings.database_url.get_secret_value()
        created = await ensure_database(url)
        async with create_pool(url, min_size=1, max_size=1) as pool:
            applied = await prepare_database(pool)
        if created:
            typer.echo("created the database")
        for m in applied:
            typer.echo(f"applied {m.version:03d}_{m.name}")
        if not applied:
            typer.echo("the schema is up to date")

    run(main())


@cache_app.command("stats")
def cache_stats(as_json: JsonOption = False) -> None:
    """Hits, misses and hit ratio of the query cache, counted by every process using it."""
    setup()
    from redis import Redis
    from redis.exceptions import RedisError

    from acci.readmodels.cache import shared_stats

    settings = get_settings()
    try:
        with Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=2) as redis:
            stats = shared_stats(redis, settings.cache_prefix)
    except (RedisError, OSError) as e:
        typer.echo(f"error (unavailable): Redis did not answer: {e}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        rows = [
            {"query": s.query, "hits": s.hits, "misses": s.misses, "hit_ratio": s.ratio}
            for s in stats
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not stats:
        typer.echo("no queries asked yet")
    for s in stats:
        typer.echo(f"{s.query:<20} hits {s.hits:>8}  misses {s.misses:>8}  ratio {s.ratio:6.1%}")


@app.command("worker")
def worker(
    max_workflow_tasks: Annotated[
        int | None,
        typer.Option(
            "--max-concurrent-workflow-tasks",
            min=1,
            help="Workflow tasks at once (default: ACCI_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS).",
        ),
    ] = None,
    max_activities: Annotated[
        int | None,
        typer.Option(
            "--max-concurrent-activities",
            min=1,
            help="Activities at once (default: ACCI_WORKER_MAX_CONCURRENT_ACTIVITIES).",
        ),
    ] = None,
) -> None:
    """Run a worker on the command task queue until SIGINT/SIGTERM (in-flight work finishes)."""
    setup()
    from acci.workers.metrics_temporal import metrics_runtime
    from acci.workers.process import tune_gc
    from acci.workers.temporal_client import connect
    from acci.workers.tracing import configure_tracing
    from acci.workers.worker import running_worker

    overrides: dict[str, int] = {}
    if max_workflow_tasks is not None:
        overrides["worker_max_concurrent_workflow_tasks"] = max_workflow_tasks
    if max_activities is not None:
        overrides["worker_max_concurrent_activities"] = max_activities
    settings = get_settings().model_copy(update=overrides)

    tune_gc()  # the worker's modules are imported: what they made is frozen (process.py)

    async def main() -> None:
        stop = _stop_on_signals()
        runtime = metrics_runtime(settings.metrics_host, settings.temporal_metrics_port)
        client = await connect(settings, runtime=runtime, interceptors=configure_tracing(settings))
        async with running_worker(settings, client):
            await stop.wait()

    run(main())


@app.command("dev")
def dev(
    demo: Annotated[
        bool, typer.Option("--demo", help="Run the scripted scenario once up.")
    ] = False,
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop once the scenario (if any) has run.")
    ] = False,
) -> None:
    """The embedded default: Temporal dev server + Web UI, migrated database, a worker."""
    settings = get_settings()
    # The worker's JSON logs would drown the scenario on the terminal: they go beside the
    # dev server's own log, and the output names the file.
    log_file = Path(settings.data_dir) / DEV_LOG_NAME
    configure_logging(
        settings.log_level,
        path=log_file,
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
    )
    from acci.workers.demo import DevSetup, run_demo
    from acci.workers.devserver import DevServer, DevServerError, set_retention
    from acci.workers.http_endpoint import http_endpoint, readiness_on_loop
    from acci.workers.metrics_temporal import metrics_runtime
    from acci.workers.process import tune_gc
    from acci.workers.schedules import apply_schedules
    from acci.workers.temporal_client import connect
    from acci.workers.tracing import configure_tracing
    from acci.workers.worker import running_worker

    tune_gc()  # the worker's modules are imported: what they made is frozen (process.py)

    async def main() -> None:
        with ExitStack() as stack:
            # Before the dev server, which is told where its Web UI decodes payloads.
            await serve(open_dev_codec(stack, settings))

    async def serve(codec_url: str | None) -> None:
        stop = _stop_on_signals()
        server = DevServer(settings, codec_endpoint=codec_url)
        try:
            await asyncio.to_thread(server.start)
        except DevServerError as e:
            typer.echo(f"error (unavailable): {e}", err=True)
            raise typer.Exit(1) from None
        try:
            runtime = metrics_runtime(settings.metrics_host, settings.temporal_metrics_port)
            client = await connect(
                settings,
                starting_within=30,
                runtime=runtime,
                interceptors=configure_tracing(settings),
            )
            # The dev server keeps every closed run for a day by default: under a steady load
            # its SQLite file grows by gigabytes before anything is deleted.
            await set_retention(
                client, settings.temporal_namespace, timedelta(hours=settings.dev_retention_hours)
            )
            # Served here rather than by the worker, so that what is printed is what is served.
            with http_endpoint(
                settings.metrics_host,
                settings.metrics_port,
                ready=readiness_on_loop(settings, client),
            ) as served:
                worker_settings = settings.model_copy(update={"metrics_port": 0})
                async with running_worker(worker_settings, client):
                    # The embedded default keeps its streams' loads short on a schedule too.
                    for applied in await apply_schedules(client, settings):
                        typer.echo(f"schedule {applied.schedule_id}: {applied.outcome}")
                    where_to_look = DevSetup(
                        ui_url=server.ui_url,
                        metrics=_metrics_status(settings, served, log_file),
                        logs=f"{log_file} (ACCI), {Path(settings.data_dir) / TEMPORAL_LOG_NAME}"
                        " (Temporal dev server)",
                    )
                    _show_dev_setup(settings, server, where_to_look)
                    if codec_url is not None:
                        typer.echo(describe_codec(settings, codec_url))
                    if demo:
                        await run_demo(settings, client, dev=where_to_look)
                    if exit_after:
                        return
                    typer.echo("\nPress Ctrl-C to stop.")
                    await stop.wait()
                    typer.echo("stopping…")
        finally:
            await asyncio.to_thread(server.stop)

    run(main())


def _show_dev_setup(settings: Settings, server: DevServer, dev: DevSetup) -> None:
    """What ``acci dev`` started, and where to look."""
    typer.echo(
        f"ACCI is up.\n"
        f"  Temporal            {settings.temporal_address} (data in {server.data_dir},"
        f" runs kept {settings.dev_retention_hours}h after they close)\n"
        f"  Temporal Web UI     {server.ui_url}\n"
        f"  task queue          {settings.task_queue}\n"
        f"  event store         {without_password(settings.database_url.get_secret_value())}\n"
        f"  RabbitMQ exchange   acci.events at {where(settings.rabbitmq_url.get_secret_value())}\n"
        f"  metrics             {dev.metrics}\n"
        f"  logs                {dev.logs}"
    )


def _metrics_status(settings: Settings, served: int | None, log_file: Path) -> str:
    """The metrics URL if the endpoint is served, else why it is not."""
    if served is not None:
        base = f"http://{settings.metrics_host}:{served}"
        return f"{base}/metrics (health: {base}/healthz, {base}/readyz)"
    if settings.metrics_port == 0:
        return "off (ACCI_METRICS_PORT=0)"
    return (
        f"not served: could not listen on {settings.metrics_host}:{settings.metrics_port}"
        f" (see {log_file})"
    )


@app.command("demo")
def demo() -> None:
    """Run the scripted scenario against a running ACCI (see `acci dev`)."""
    setup()
    from acci.workers.demo import run_demo
    from acci.workers.temporal_client import connect
    from acci.workers.tracing import configure_tracing

    async def main() -> None:
        settings = get_settings()
        await run_demo(settings, await connect(settings, interceptors=configure_tracing(settings)))

    run(main())


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def main() -> None:
    """Console-script entry point."""
    try:
        code = invoke(app)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    # Spans still batched are sent now: os._exit below skips the exporter's own flush at exit.
    shutdown_tracing()
    # The Temporal SDK's native threads can abort the interpreter while it finalises, turning
    # a finished command into exit status -6. Everything is done and flushed by now: leave.
    if "temporalio.bridge" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
