"""The ``acci`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from workers.cli_commands import tenant_app, user_app
from workers.cli_events_publish import publish_events
from workers.cli_projections import projections_app
from workers.cli_queries import tenant_queries, user_queries
from workers.cli_support import JsonOption, TenantOption, invoke, run, setup
from workers.devserver import DEV_LOG_NAME, TEMPORAL_LOG_NAME
from workers.logs import configure_logging
from workers.settings import Settings, get_settings
from workers.urls import where, without_password

app = typer.Typer(
    help="ACCI: a durable CQRS / event-sourcing platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The event-store database.", no_args_is_help=True)
cache_app = typer.Typer(help="The Redis query cache.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(cache_app, name="cache")
tenant_app.add_typer(tenant_queries)
user_app.add_typer(user_queries)
app.add_typer(tenant_app, name="tenant")
app.add_typer(user_app, name="user")
app.add_typer(projections_app, name="projections")
app.command("publish-events")(publish_events)


@app.command("check-services")
def check_services() -> None:
    """Check that PostgreSQL, Redis and RabbitMQ answer; say how to start any that does not."""
    from workers.checks import check_services as run_checks
    from workers.checks import start_hint

    results = run_checks(get_settings())
    for result in results:
        mark = "ok  " if result.ok else "DOWN"
        typer.echo(f"{mark} {result.name:<10} {result.detail}")
    down = [r.name for r in results if not r.ok]
    if down:
        typer.echo(
            f"\n{', '.join(down)} not answering. Start the local service(s) (README, 'Services'),"
            f" or run: {start_hint()}",
            err=True,
        )
        raise typer.Exit(2)


@db_app.command("migrate")
def db_migrate() -> None:
    """Create the database if missing and apply pending migrations (safe to run twice)."""
    setup()
    from eventstore.db import create_pool, ensure_database
    from eventstore.migrate import migrate

    async def main() -> None:
        settings = get_settings()
        url = settings.database_url.get_secret_value()
        created = await ensure_database(url)
        async with create_pool(url, min_size=1, max_size=1) as pool:
            applied = await migrate(pool)
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

    from readmodels.cache import shared_stats

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


TypeOption = Annotated[
    str | None,
    typer.Option(
        "--type",
        help="The aggregate type (Tenant, User, ...): streams of different types may share an id.",
    ),
]


@app.command("events")
def events(
    aggregate_id: Annotated[str, typer.Argument(help="The stream (aggregate id).")],
    tenant: TenantOption,
    aggregate_type: TypeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a stream's events: the audit trail of one aggregate (of every type with that id
    unless --type names one)."""
    setup()
    from workers.runtime import open_event_store

    async def main() -> None:
        async with open_event_store(get_settings()) as rt:
            recorded = await rt.store.read_stream(
                tenant, aggregate_id, aggregate_type=aggregate_type
            )
        if as_json:
            typer.echo(json.dumps([_event_json(e) for e in recorded], indent=2, default=str))
            return
        if not recorded:
            typer.echo(f"no events in stream {tenant}/{aggregate_id}")
        for e in recorded:
            typer.echo(
                f"{e.aggregate_type} v{e.sequence_number:<4}"
                f" {e.created_at.isoformat(timespec='milliseconds')}"
                f"  {e.event_type} v{e.event_version}  {json.dumps(e.data)}"
                f"  (position {e.position}, command {e.command_id})"
            )

    run(main())


@app.command("aggregate")
def aggregate(
    aggregate_id: Annotated[str, typer.Argument(help="The aggregate id.")],
    tenant: TenantOption,
    aggregate_type: TypeOption = None,
    version: Annotated[
        int | None, typer.Option(help="State at this stream version (1 or more).")
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", help="State as of this time (ISO 8601, UTC if no zone)."),
    ] = None,
) -> None:
    """Print an aggregate's state now, at a version, or as of a time."""
    if version is not None and version < 1:
        # A stream's first event is version 1; version 0 would be the state before it.
        raise typer.BadParameter(f"must be 1 or more, got {version}", param_hint="'--version'")
    if version is not None and as_of is not None:
        raise typer.BadParameter("--version and --as-of exclude each other")
    setup()
    from datetime import UTC

    from domain import AGGREGATES
    from domain.errors import CommandValidationError
    from readmodels.errors import NotFoundError
    from workers.runtime import open_event_store

    when = as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of

    async def main() -> None:
        async with open_event_store(get_settings()) as rt:
            # The first event of every stream with this id (of this type, if one is named).
            firsts = await rt.store.read_stream(
                tenant, aggregate_id, aggregate_type=aggregate_type, to_version=1
            )
            if not firsts:
                named = f"{aggregate_type} " if aggregate_type else ""
                raise NotFoundError(
                    f"there is no {named}aggregate {aggregate_id!r} in tenant {tenant!r}"
                )
            if len(firsts) > 1:
                types = ", ".join(e.aggregate_type for e in firsts)
                raise CommandValidationError(
                    f"{aggregate_id!r} names aggregates of several types in tenant {tenant!r}"
                    f" ({types}); choose one with --type"
                )
            cls = AGGREGATES[firsts[0].aggregate_type]
            what = f"{cls.aggregate_type} {aggregate_id!r} of tenant {tenant!r}"
            # Folding no events would print an empty state as if it had been the state then.
            if when is not None and when < firsts[0].created_at:
                raise NotFoundError(
                    f"{what} did not exist as of {when.isoformat()}:"
                    f" its first event was stored at {firsts[0].created_at.isoformat()}"
                )
            agg = await rt.repository.load(cls, tenant, aggregate_id, version=version, as_of=when)
            if version is not None and agg.version < version:
                raise NotFoundError(
                    f"{what} has no version {version}: its stream is at version {agg.version}"
                )
        typer.echo(
            json.dumps(
                {
                    "tenant_id": tenant,
                    "aggregate_id": aggregate_id,
                    "aggregate_type": cls.aggregate_type,
                    "version": agg.version,
                    "state": agg.state_to_json(),
                },
                indent=2,
            )
        )

    run(main())


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
    from workers.temporal_client import connect
    from workers.worker import running_worker

    overrides: dict[str, int] = {}
    if max_workflow_tasks is not None:
        overrides["worker_max_concurrent_workflow_tasks"] = max_workflow_tasks
    if max_activities is not None:
        overrides["worker_max_concurrent_activities"] = max_activities
    settings = get_settings().model_copy(update=overrides)

    async def main() -> None:
        stop = _stop_on_signals()
        client = await connect(settings)
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
    configure_logging(settings.log_level, path=log_file)
    from workers.demo import DevSetup, run_demo
    from workers.devserver import DevServer, DevServerError
    from workers.metrics import metrics_endpoint
    from workers.temporal_client import connect
    from workers.worker import running_worker

    async def main() -> None:
        stop = _stop_on_signals()
        server = DevServer(settings)
        try:
            await asyncio.to_thread(server.start)
        except DevServerError as e:
            typer.echo(f"error (unavailable): {e}", err=True)
            raise typer.Exit(1) from None
        try:
            client = await connect(settings, starting_within=30)
            # Served here rather than by the worker, so that what is printed is what is served.
            with metrics_endpoint(settings.metrics_host, settings.metrics_port) as served:
                worker_settings = settings.model_copy(update={"metrics_port": 0})
                async with running_worker(worker_settings, client):
                    where_to_look = DevSetup(
                        ui_url=server.ui_url,
                        metrics=_metrics_status(settings, served, log_file),
                        logs=f"{log_file} (ACCI), {Path(settings.data_dir) / TEMPORAL_LOG_NAME}"
                        " (Temporal dev server)",
                    )
                    typer.echo(
                        f"ACCI is up.\n"
                        f"  Temporal            {settings.temporal_address}"
                        f" (data in {server.data_dir})\n"
                        f"  Temporal Web UI     {server.ui_url}\n"
                        f"  task queue          {settings.task_queue}\n"
                        f"  event store         "
                        f"{without_password(settings.database_url.get_secret_value())}\n"
                        f"  RabbitMQ exchange   acci.events"
                        f" at {where(settings.rabbitmq_url.get_secret_value())}\n"
                        f"  metrics             {where_to_look.metrics}\n"
                        f"  logs                {where_to_look.logs}"
                    )
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


def _metrics_status(settings: Settings, served: int | None, log_file: Path) -> str:
    """The metrics URL if the endpoint is served, else why it is not."""
    if served is not None:
        return f"http://{settings.metrics_host}:{served}/metrics"
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
    from workers.demo import run_demo
    from workers.temporal_client import connect

    async def main() -> None:
        settings = get_settings()
        await run_demo(settings, await connect(settings))

    run(main())


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _event_json(e: Any) -> dict[str, Any]:
    return {
        "event_id": str(e.event_id),
        "sequence_number": e.sequence_number,
        "event_type": e.event_type,
        "event_version": e.event_version,
        "data": e.data,
        "metadata": e.metadata,
        "command_id": str(e.command_id),
        "created_at": e.created_at.isoformat(),
        "position": str(e.position),
    }


def main() -> None:
    """Console-script entry point."""
    try:
        code = invoke(app)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    # The Temporal SDK's native threads can abort the interpreter while it finalises, turning
    # a finished command into exit status -6. Everything is done and flushed by now: leave.
    if "temporalio.bridge" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
