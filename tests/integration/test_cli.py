"""The ``acci`` command line, run as a user runs it: a process, its output and exit status."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from acci.activities.command_handler import CommandHandler
from acci.domain.tenant_commands import CreateTenant, RenameTenant, SuspendTenant
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from tests.conftest import drop_database
from tests.integration.query_rows import REDIS_URL

ACCI = str(Path(sys.executable).with_name("acci"))
ROOT = Path(__file__).resolve().parents[2]
# Rich's panels (the box typer draws around errors) are made of these.
BOX_DRAWING = {chr(c) for c in range(0x2500, 0x2580)}


def acci(database_url: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``acci args…`` as a process, on ``database_url``, with other settings (``ACCI_…``)."""
    env = {**os.environ, "ACCI_DATABASE_URL": database_url, **settings}
    return subprocess.run(
        [ACCI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def fresh_url(database_url: str) -> Iterator[str]:
    """A database that does not exist yet: the CLI creates it (and the fixture drops it)."""
    url = database_url.replace("acci_t_test_cli", "acci_t_cli_new")
    yield url
    drop_database(url)


def test_db_migrate_creates_the_database_and_is_safe_to_run_twice(fresh_url: str) -> None:
    first = acci(fresh_url, "db", "migrate")
    assert first.returncode == 0, first.stderr
    assert "created the database" in first.stdout and "applied 001_event_store" in first.stdout
    again = acci(fresh_url, "db", "migrate")
    assert again.returncode == 0, again.stderr
    assert "the schema is up to date" in again.stdout


@pytest_asyncio.fixture(scope="module")
async def seeded(database_url: str, store: EventStore, repository: AggregateRepository) -> str:
    """The module's database with a tenant created, suspended and renamed."""
    handler = CommandHandler(store, repository)
    for command in (
        CreateTenant(tenant_id="cli-t", name="First Name"),
        SuspendTenant(tenant_id="cli-t", reason="audit"),
        RenameTenant(tenant_id="cli-t", name="Second Name"),
    ):
        await handler.handle("cli-t", command, command_id=uuid.uuid4())
    return database_url


def test_events_prints_the_audit_trail_as_json(seeded: str) -> None:
    out = acci(seeded, "events", "cli-t", "--tenant", "cli-t", "--json")
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    assert [e["sequence_number"] for e in events] == [1, 2, 3]
    assert [e["event_type"] for e in events] == [
        "TenantCreated",
        "TenantSuspended",
        "TenantRenamed",
    ]


async def test_events_says_which_stored_events_do_not_read_as_their_type(
    seeded: str, pool: AsyncConnectionPool, store: EventStore, repository: AggregateRepository
) -> None:
    # The trail shows every event as stored, and names the ones a load would refuse.
    handler = CommandHandler(store, repository)
    for command in (
        CreateTenant(tenant_id="cli-bad", name="First"),
        RenameTenant(tenant_id="cli-bad", name="Second"),
    ):
        await handler.handle("cli-bad", command, command_id=uuid.uuid4())
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE event_store.events SET data = '{\"bogus\": 1}'"
            " WHERE tenant_id = 'cli-bad' AND event_type = 'TenantRenamed'"
        )
    shown = await asyncio.to_thread(acci, seeded, "events", "cli-bad", "--tenant", "cli-bad")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("Tenant v1 ") and "TenantCreated v1" in lines[0]
    assert "TenantRenamed v1" in lines[1] and '{"bogus": 1}' in lines[1]
    assert lines[2].startswith("  ! ") and "old_name: Field required" in lines[2], lines
    assert len(lines) == 3
    out = await asyncio.to_thread(
        acci, seeded, "events", "cli-bad", "--tenant", "cli-bad", "--json"
    )
    problems = [e["problem"] for e in json.loads(out.stdout)]
    assert problems[0] is None and "old_name: Field required" in problems[1]


def test_aggregate_prints_state_now_and_at_a_version(seeded: str) -> None:
    out = acci(seeded, "aggregate", "cli-t", "--tenant", "cli-t", "--version", "1")
    assert out.returncode == 0, out.stderr
    then = json.loads(out.stdout)
    assert (then["version"], then["state"]["status"], then["state"]["name"]) == (
        1,
        "active",
        "First Name",
    )
    now = json.loads(acci(seeded, "aggregate", "cli-t", "--tenant", "cli-t").stdout)
    assert (now["version"], now["state"]["status"], now["state"]["name"]) == (
        3,
        "suspended",
        "Second Name",
    )


def test_aggregate_at_a_version_past_the_stream_says_how_far_it_goes(seeded: str) -> None:
    out = acci(seeded, "aggregate", "cli-t", "--tenant", "cli-t", "--version", "7")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (
        "error (not_found): Tenant 'cli-t' of tenant 'cli-t' has no version 7:"
        " its stream is at version 3\n"
    )


def test_aggregate_as_of_a_time_before_its_first_event_says_it_did_not_exist(seeded: str) -> None:
    events = json.loads(acci(seeded, "events", "cli-t", "--tenant", "cli-t", "--json").stdout)
    created = datetime.fromisoformat(events[0]["created_at"])
    before = (created - timedelta(microseconds=1)).isoformat()
    out = acci(seeded, "aggregate", "cli-t", "--tenant", "cli-t", "--as-of", before)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (
        f"error (not_found): Tenant 'cli-t' of tenant 'cli-t' did not exist as of {before}:"
        f" its first event was stored at {created.isoformat()}\n"
    )
    # At the very time of its first event it did exist, as it was then.
    at = acci(seeded, "aggregate", "cli-t", "--tenant", "cli-t", "--as-of", created.isoformat())
    assert at.returncode == 0, at.stderr
    assert json.loads(at.stdout)["version"] == 1


def test_aggregate_that_never_existed_is_not_found(seeded: str) -> None:
    out = acci(seeded, "aggregate", "nobody", "--tenant", "cli-t", "--as-of", "2020-01-01")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == "error (not_found): there is no aggregate 'nobody' in tenant 'cli-t'\n"


# Each case: the arguments, and the one line the user must see on stderr (exit status 2).
USAGE_ERRORS = {
    "unknown subcommand": (["nosuch"], "No such command 'nosuch'; see 'acci --help'"),
    "unknown sub-subcommand": (
        ["tenant", "crate"],
        "No such command 'crate'. Did you mean 'create'?; see 'acci tenant --help'",
    ),
    "missing --tenant": (
        ["tenant", "create", "--name", "Acme"],
        "Missing option '--tenant' / '-t'; see 'acci tenant create --help'",
    ),
    "missing argument": (
        ["events", "--tenant", "t"],
        "Missing argument 'aggregate_id'; see 'acci events --help'",
    ),
    "malformed --command-id": (
        ["tenant", "create", "--tenant", "t", "--name", "T", "--command-id", "not-a-uuid"],
        "Invalid value for '--command-id': Input should be a valid UUID, invalid character:"
        " found `n` at 0; see 'acci tenant create --help'",
    ),
    "bad JSON": (
        ["tenant", "create", "--tenant", "t", "--name", "T", "--settings", "{"],
        "Invalid value: --settings is not JSON: Expecting property name enclosed in double"
        " quotes: line 1 column 2 (char 1); see 'acci tenant create --help'",
    ),
    "JSON that is not an object": (
        ["tenant", "update-settings", "--tenant", "t", "--settings", "[1]"],
        "Invalid value: --settings must be a JSON object; see 'acci tenant update-settings --help'",
    ),
    "bad option value": (
        ["tenant", "list", "--limit", "many"],
        "Invalid value for '--limit': Input should be a valid integer, unable to parse string"
        " as an integer; see 'acci tenant list --help'",
    ),
    "unknown option": (
        ["events", "x", "--tenant", "t", "--bogus"],
        "No such option: --bogus; see 'acci events --help'",
    ),
    "malformed time": (
        ["aggregate", "x", "--tenant", "t", "--as-of", "yesterday"],
        "Invalid value for '--as-of': Input should be a valid datetime or date, input is too"
        " short; see 'acci aggregate --help'",
    ),
    "negative version": (
        ["aggregate", "x", "--tenant", "t", "--version", "-3"],
        "Invalid value for '--version': must be 1 or more, got -3; see 'acci aggregate --help'",
    ),
    "version zero": (
        ["aggregate", "x", "--tenant", "t", "--version", "0"],
        "Invalid value for '--version': must be 1 or more, got 0; see 'acci aggregate --help'",
    ),
    "version and time together": (
        ["aggregate", "x", "--tenant", "t", "--version", "1", "--as-of", "2020-01-01"],
        "Invalid value: --version and --as-of exclude each other; see 'acci aggregate --help'",
    ),
    "options that exclude each other": (
        ["tenant", "suspend", "-t", "t", "--reason", "r", "--no-wait", "--wait-for-read-model"],
        "Invalid value: --no-wait and --wait-for-read-model exclude each other;"
        " see 'acci tenant suspend --help'",
    ),
}


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_a_usage_error_is_one_line_and_exit_2(fresh_url: str, case: str) -> None:
    args, message = USAGE_ERRORS[case]
    out = acci(fresh_url, *args)
    assert (out.returncode, out.stdout) == (2, ""), out.stderr
    assert out.stderr == f"error (usage): {message}\n"
    assert not BOX_DRAWING & set(out.stderr)


def test_help_still_works_and_exits_0(fresh_url: str) -> None:
    out = acci(fresh_url, "tenant", "create", "--help")
    assert (out.returncode, out.stderr) == (0, "")
    assert "--command-id" in out.stdout and "--tenant" in out.stdout


def test_a_group_without_a_subcommand_prints_its_help_and_exits_2(fresh_url: str) -> None:
    out = acci(fresh_url, "tenant")
    assert out.returncode == 2
    assert "create" in out.stdout and "error" not in out.stderr


def test_bad_input_on_the_command_line_is_a_typed_error_and_exit_1(fresh_url: str) -> None:
    out = acci(fresh_url, "events", "x'; DROP TABLE event_store.events;--", "--tenant", "t")
    assert out.returncode == 1
    assert "error (validation): invalid aggregate id" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_services_reports_each_service(fresh_url: str) -> None:
    out = acci(fresh_url, "check-services")
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("PostgreSQL", "Redis", "RabbitMQ"):
        assert f"ok   {name}" in out.stdout


def test_check_services_names_the_one_that_is_down(fresh_url: str) -> None:
    env_url = "postgresql://postgres@127.0.0.1:1/acci"
    out = subprocess.run(
        [ACCI, "check-services"],
        env={**os.environ, "ACCI_DATABASE_URL": env_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "DOWN PostgreSQL" in out.stdout
    assert "docker compose up -d postgres redis rabbitmq" in out.stderr


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("ACCI_RABBITMQ_URL", "amqp://guest:not-the-password@127.0.0.1:5672/%2F"),
        ("ACCI_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/no-such-vhost"),
        ("ACCI_DATABASE_URL", "postgresql://no_such_role@127.0.0.1:5432/acci"),
    ],
)
def test_check_services_tells_a_refused_login_from_a_service_that_is_down(
    variable: str, url: str
) -> None:
    out = subprocess.run(
        [ACCI, "check-services"],
        env={**os.environ, variable: url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    name = "RabbitMQ" if "RABBITMQ" in variable else "PostgreSQL"
    assert f"DOWN {name}" in out.stdout
    assert f"{name} answered but refused the login" in out.stderr
    assert "not answering" not in out.stderr and "not-the-password" not in out.stdout + out.stderr


def test_a_query_on_a_database_that_does_not_exist_says_so() -> None:
    missing = f"acci_t_missing_{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [ACCI, "tenant", "list"],
        env={**os.environ, "ACCI_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{missing}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.splitlines()[-1] == (
        f'error (read_model): PostgreSQL at 127.0.0.1:5432 refused acci_app: database "{missing}"'
        " does not exist (`acci db migrate` creates it)"
    )


async def test_a_system_administrators_query_names_the_owners_database_when_only_it_is_missing(
    database_url: str, pool: AsyncConnectionPool
) -> None:
    # The tenant role's database is there (this module's, migrated: acci_app exists); the
    # owner's URL names one that is not: the answer is PostgreSQL's reason at once, not the
    # pool's wait of 30 s in the first cross-tenant query.
    missing = f"acci_t_missing_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    out = await asyncio.to_thread(
        acci,
        f"postgresql://postgres@127.0.0.1:5432/{missing}",
        "tenant",
        "list",
        ACCI_APP_DATABASE_URL=make_conninfo(database_url, user="acci_app"),
    )
    assert (out.returncode, out.stdout) == (1, ""), out.stderr
    assert out.stderr.splitlines()[-1] == (
        f'error (read_model): PostgreSQL at 127.0.0.1:5432 refused postgres: database "{missing}"'
        " does not exist (`acci db migrate` creates it)"
    )
    assert time.monotonic() - started < 20


def test_cache_stats_shows_the_tally_every_process_keeps_in_redis(fresh_url: str) -> None:
    prefix = f"acci-test-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "ACCI_DATABASE_URL": fresh_url, "ACCI_CACHE_PREFIX": prefix}
    with redis.Redis.from_url(REDIS_URL) as client:
        client.hset(f"{prefix}:stats", mapping={"hits:ListTenants": 3, "misses:ListTenants": 1})
        try:
            shown = subprocess.run(
                [ACCI, "cache", "stats", "--json"], env=env, capture_output=True, text=True
            )
        finally:
            client.delete(f"{prefix}:stats")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [
        {"query": "ListTenants", "hits": 3, "misses": 1, "hit_ratio": 0.75}
    ]

    down = subprocess.run(
        [ACCI, "cache", "stats"],
        env={**env, "ACCI_REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
    )
    assert down.returncode == 1
    assert "error (unavailable): Redis did not answer" in down.stderr


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a\\u0000b", "the query has a string at 'invoice_id' that contains a NUL character"),
        ("a\\ud800b", "invoice_id: Input should be a valid string, unable to parse raw data"),
    ],
)
def test_a_query_field_postgresql_cannot_take_is_a_validation_error(
    database_url: str, text: str, problem: str
) -> None:
    # An installed application's query with a free-text field: the platform checks its text as
    # it checks a command's, before any handler reads.
    out = acci(
        database_url,
        "query",
        "GetOpenInvoice",
        "--tenant",
        "t-1",
        "--data",
        '{"invoice_id": "' + text + '"}',
    )
    assert (out.returncode, out.stdout) == (1, ""), out.stderr
    last = out.stderr.splitlines()[-1]
    assert last.startswith("error (validation): invalid GetOpenInvoice: ") and problem in last


def test_a_command_field_with_a_nul_is_refused_naming_the_field(database_url: str) -> None:
    # Checked before anything is sent: no Temporal server is asked (none listens on port 1).
    data = '{"name": "a\\u0000b"}'
    sent = acci(
        database_url,
        *("command", "CreateTenant", "--tenant", "nul-field", "--data", data),
        ACCI_TEMPORAL_ADDRESS="127.0.0.1:1",
    )
    assert (sent.returncode, sent.stdout) == (1, ""), sent.stderr
    last = sent.stderr.splitlines()[-1]
    assert last.startswith("error (validation): ") and "payload has a string at 'name'" in last
    assert "contains a NUL character" in last


def test_a_command_payload_past_the_size_limit_is_refused_before_it_is_sent(
    database_url: str, tmp_path: Path
) -> None:
    # An application's command with an unbounded text field (tests/workflows/faulty_app.py):
    # the platform's limit refuses it, naming the sizes, before Temporal is asked (none listens
    # on port 1; its own refusal of a big input said nothing of the command).
    data = tmp_path / "big.json"
    data.write_text(json.dumps({"gizmo_id": "g1", "name": "G", "note": "x" * 300_000}))
    sent = acci(
        database_url,
        *("command", "MakeGizmo", "--tenant", "big", "--data", f"@{data}"),
        ACCI_TEMPORAL_ADDRESS="127.0.0.1:1",
        ACCI_APPS="tests.workflows.faulty_app",
        PYTHONPATH=str(ROOT),
    )
    assert (sent.returncode, sent.stdout) == (1, ""), sent.stderr
    assert sent.stderr.splitlines()[-1] == (
        "error (validation): the MakeGizmo command's payload is 300,038 bytes as JSON; a command"
        " may carry at most 262,144 (ACCI_MAX_PAYLOAD_BYTES)"
    )
