"""The read side through the doors a user uses: `acci tenant|user …` queries as processes.

A worker runs in-process; every query is an `acci` process that reads the module's database
through the shared Redis under a prefix of this module's own, so its keys can be inspected.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from acci.eventstore.records import Position
from acci.readmodels.consistency import wait_until_projected
from acci.readmodels.tenancy.tenants import GetTenantDetails
from acci.workers.runtime import open_query_bus
from acci.workers.settings import Settings
from tests.integration.query_rows import REDIS_URL, require_redis
from tests.workflows.conftest import eventually, free_port, worker_env
from tests.workflows.helpers import send
from tests.workflows.test_operator_doors import ACCI, run
from tests.workflows.test_projection_workflow import Cli

PROJECTIONS = ("tenants", "users", "tenant_activity")
UNAVAILABLE = "query cache unavailable; answering queries from PostgreSQL"
POSITION = re.compile(r"^\d+:\d+$")  # transaction:global position


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """The package's settings (own database, task queue, cache prefix), no metrics port."""
    require_redis()
    return settings.model_copy(update={"metrics_port": 0})


def query_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of an `acci` process that reads this module's read models and cache."""
    return {
        **worker_env(settings),
        "ACCI_REDIS_URL": settings.redis_url.get_secret_value(),
        "ACCI_CACHE_PREFIX": settings.cache_prefix,
        **overrides,
    }


async def acci(env: dict[str, str], *args: str) -> Cli:
    """`acci …` as a process."""
    code, out, err = await run([ACCI, *args], env, within=60)
    return Cli(code, out, err)


async def acci_json(env: dict[str, str], *args: str) -> Any:
    """`acci … --json` that must succeed: its output, parsed."""
    result = await acci(env, *args, "--json")
    assert result.code == 0, result.err
    return result.json()


async def projected(pool: AsyncConnectionPool, position: str | None) -> None:
    """Wait until every projection has passed ``position``."""
    assert position is not None
    await wait_until_projected(pool, PROJECTIONS, Position.parse(position), timeout=30)


def cache_entries(url: str, settings: Settings, tenant: str, query: str) -> list[bytes]:
    """The keys of the answers to ``query`` about ``tenant`` cached in the Redis at ``url``."""
    with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
        pattern = f"{settings.cache_prefix}:q1:{tenant}:*:{query}:*"
        return list(client.scan_iter(match=pattern, count=1000))


def log_messages(stderr: str) -> list[str]:
    """The ``msg`` of every JSON log line on a process's stderr."""
    messages = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            messages.append(json.loads(line)["msg"])
    return messages


# -- commands wait for their read model, queries show it --------------------------------------


async def test_commands_wait_for_their_read_model_and_queries_show_tenants_users_and_activity(
    worker: Client, settings: Settings
) -> None:
    env = query_env(settings)
    t = "doors-acme"
    created = await acci_json(
        env,
        "tenant",
        "create",
        "--tenant",
        t,
        "--name",
        "Doors Acme",
        "--settings",
        '{"max_users": 10}',
        "--wait-for-read-model",
    )
    assert POSITION.match(created["position"]), created
    assert created["position"] == created["positions"][-1]
    tenant_view = created["read_model"]
    assert (tenant_view["tenant_id"], tenant_view["name"]) == (t, "Doors Acme")
    assert (tenant_view["status"], tenant_view["user_count"], tenant_view["version"]) == (
        "active",
        0,
        1,
    )
    assert tenant_view["settings"]["max_users"] == 10

    alice, bob = await asyncio.gather(
        acci_json(
            env,
            *("user", "register", "alice", "--tenant", t, "--email", "alice@acme.example"),
            *("--name", "Alice", "--role", "admin", "--role", "owner", "--wait-for-read-model"),
        ),
        acci_json(
            env,
            *("user", "register", "bob", "--tenant", t, "--email", "bob@acme.example"),
            *("--name", "Bob", "--wait-for-read-model"),
        ),
    )
    assert POSITION.match(alice["position"]) and POSITION.match(bob["position"])
    assert Position.parse(alice["position"]) > Position.parse(created["position"])
    assert alice["read_model"] == {
        **alice["read_model"],
        "tenant_id": t,
        "user_id": "alice",
        "email": "alice@acme.example",
        "display_name": "Alice",
        "roles": ["admin", "owner"],
        "status": "active",
        "version": 1,
    }
    assert bob["read_model"]["roles"] == ["member"]
    # A user command waits for the users read model only; the others are asked to catch up.
    last = str(max(Position.parse(alice["position"]), Position.parse(bob["position"])))

    tenant, user, users, admins, activity = await asyncio.gather(
        acci_json(env, "tenant", "get", "--tenant", t, "--consistent-with", last),
        acci_json(env, "user", "get", "alice", "--tenant", t),
        acci_json(env, "user", "list", "--tenant", t),
        acci_json(env, "user", "list", "--tenant", t, "--role", "admin"),
        acci_json(env, "tenant", "activity", "--tenant", t, "--consistent-with", last),
    )
    assert (tenant["name"], tenant["user_count"], tenant["version"]) == (
        "Doors Acme",
        2,
        3,
    )  # two seats taken
    assert user == alice["read_model"]
    assert [u["user_id"] for u in users["items"]] == ["alice", "bob"]  # by email
    assert users["next_cursor"] is None
    assert [u["user_id"] for u in admins["items"]] == ["alice"]
    counts = {a["event_type"]: a["event_count"] for a in activity["event_types"]}
    assert counts == {"TenantCreated": 1, "UserRegistered": 2, "UserSeatReserved": 2}
    assert activity["total_events"] == 5

    first = await acci_json(env, "user", "list", "--tenant", t, "--limit", "1")
    assert [u["user_id"] for u in first["items"]] == ["alice"] and first["next_cursor"]
    second = await acci_json(
        env, "user", "list", "--tenant", t, "--limit", "1", "--cursor", first["next_cursor"]
    )
    assert [u["user_id"] for u in second["items"]] == ["bob"]
    assert second["next_cursor"] is None


async def test_tenant_list_filters_by_status_and_pages_in_sort_order_with_a_cursor(
    worker: Client, settings: Settings
) -> None:
    q = settings.task_queue
    names = {"doors-z": "Zeta", "doors-a": "Alpha", "doors-m": "Mu", "doors-b": "Beta"}
    names |= {"doors-a2": "Alpha", "doors-s1": "Sigma", "doors-s2": "Kappa"}
    created = await asyncio.gather(
        *(send(worker, q, t, "CreateTenant", name=name) for t, name in names.items())
    )
    suspended = await asyncio.gather(
        *(send(worker, q, t, "SuspendTenant", reason="audit") for t in ("doors-s1", "doors-s2"))
    )
    last = max(Position.parse(r.position or "") for r in [*created, *suspended])
    env = query_env(settings)

    active: list[dict[str, Any]] = []
    cursor: list[str] = ["--consistent-with", str(last)]
    pages = 0
    while True:
        page = await acci_json(env, "tenant", "list", "--status", "active", "--limit", "2", *cursor)
        assert len(page["items"]) <= 2
        active += page["items"]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    ids = [v["tenant_id"] for v in active]
    assert len(ids) == len(set(ids)) and pages >= 3
    assert {v["status"] for v in active} == {"active"}
    assert [(v["name"], v["tenant_id"]) for v in active] == sorted(
        (v["name"], v["tenant_id"]) for v in active
    )
    mine = [t for t in ids if t in names]
    assert mine == ["doors-a", "doors-a2", "doors-b", "doors-m", "doors-z"]

    held = await acci_json(env, "tenant", "list", "--status", "suspended")
    assert {v["status"] for v in held["items"]} == {"suspended"}
    assert [v["tenant_id"] for v in held["items"] if v["tenant_id"] in names] == [
        "doors-s2",  # Kappa
        "doors-s1",  # Sigma
    ]
    newest = await acci_json(
        env, "tenant", "list", "--sort", "created_at", "--desc", "--limit", "3"
    )
    stamps = [v["created_at"] for v in newest["items"]]
    assert stamps == sorted(stamps, reverse=True) and len(stamps) == 3


async def test_a_tenants_user_sees_only_their_tenant_and_is_refused_another(
    worker: Client, settings: Settings
) -> None:
    q = settings.task_queue
    created = await asyncio.gather(
        *(send(worker, q, t, "CreateTenant", name=t.title()) for t in ("seen-a", "seen-b"))
    )
    last = str(max(Position.parse(r.position or "") for r in created))
    env = query_env(settings)
    everyone = await acci_json(env, "tenant", "list", "--limit", "100", "--consistent-with", last)
    assert {"seen-a", "seen-b"} <= {v["tenant_id"] for v in everyone["items"]}

    admin_of_a = ["--as", "ann@seen-a:admin"]
    mine = await acci_json(env, "tenant", "list", *admin_of_a, "--consistent-with", last)
    assert [v["tenant_id"] for v in mine["items"]] == ["seen-a"]
    generic = await acci(env, "query", "ListTenants", *admin_of_a)
    assert generic.code == 0, generic.err
    assert [v["tenant_id"] for v in generic.json()["items"]] == ["seen-a"]
    own = await acci_json(env, "tenant", "get", "--tenant", "seen-a", *admin_of_a)
    assert own["tenant_id"] == "seen-a"

    refused = await acci(env, "tenant", "get", "--tenant", "seen-b", *admin_of_a)
    assert refused.code == 1
    assert "error (authorization): ann@seen-a may not read the data of tenant 'seen-b'" in (
        refused.err
    )
    assert "Seen-B" not in refused.out + refused.err
    bad = await acci(env, "tenant", "list", "--as", "ann@seen-a:superhero")
    assert bad.code == 2 and "--as" in bad.err


# -- read-your-writes and typed errors ---------------------------------------------------------


async def test_consistent_with_a_commands_position_shows_the_write_and_a_future_one_times_out(
    worker: Client, settings: Settings
) -> None:
    env = query_env(settings)
    t = "doors-ryw"
    await send(worker, settings.task_queue, t, "CreateTenant", name="Before")
    renamed = await acci_json(env, "tenant", "rename", "--tenant", t, "--name", "After")
    assert POSITION.match(renamed["position"]) and "read_model" not in renamed
    shown = await acci_json(
        env, "tenant", "get", "--tenant", t, "--consistent-with", renamed["position"]
    )
    assert (shown["name"], shown["version"]) == ("After", 2)

    impatient = query_env(settings, ACCI_QUERY_CONSISTENCY_TIMEOUT_MS="500")
    future = "999999999:999999999"
    asks = {
        "tenants": ("tenant", "get", "--tenant", t),
        "users": ("user", "list", "--tenant", t),
        "tenant_activity": ("tenant", "activity", "--tenant", t),
    }

    async def timed(args: tuple[str, ...]) -> tuple[Cli, float]:
        started = time.monotonic()
        result = await acci(impatient, *args, "--consistent-with", future)
        return result, time.monotonic() - started

    results = await asyncio.gather(*(timed(args) for args in asks.values()))
    for read_model, (result, took) in zip(asks, results, strict=True):
        assert result.code == 1, result.out
        assert result.err.startswith("error (projection): "), result.err
        assert f"read model {read_model!r} has not reached position {future}" in result.err
        assert "after 0.5 s" in result.err
        assert "Traceback" not in result.err
        assert 0.5 <= took < 15, took  # it waited the configured bound, not the default 5 s


async def test_malformed_positions_bad_paging_and_unknown_ids_are_typed_errors(
    worker: Client, settings: Settings
) -> None:
    env = query_env(settings)
    t = "doors-errors"
    await send(worker, settings.task_queue, t, "CreateTenant", name="Errors")
    cases = [
        (("tenant", "get", "--tenant", t, "--consistent-with", "soon"), 2, "consistent-with"),
        (("tenant", "get", "--tenant", t, "--consistent-with", "1:-2"), 2, "not a position"),
        (("tenant", "list", "--limit", "0"), 1, "error (validation): invalid ListTenants: limit"),
        (("tenant", "list", "--limit", "501"), 1, "error (validation): invalid ListTenants: limit"),
        (("tenant", "list", "--cursor", "bogus"), 1, "error (validation): invalid ListTenants"),
        (("user", "list", "--tenant", t, "--limit", "0"), 1, "error (validation)"),
        (("user", "list", "--tenant", t, "--cursor", "bogus"), 1, "error (validation)"),
        (("tenant", "get", "--tenant", "doors-nobody"), 1, "error (not_found): "),
        (("tenant", "activity", "--tenant", "doors-nobody"), 1, "error (not_found): "),
        (("user", "get", "ghost", "--tenant", t), 1, "error (not_found): "),
    ]
    results = await asyncio.gather(*(acci(env, *args, "--json") for args, _, _ in cases))
    for (args, code, message), result in zip(cases, results, strict=True):
        assert (result.code, result.out) == (code, ""), (args, result)
        assert message in result.err, (args, result.err)
        assert "Traceback" not in result.err, args
    cursor_error = results[4].err
    assert "'bogus' is not a cursor this query returned" in cursor_error
    assert "doors-nobody" in results[7].err and "ghost" in results[9].err


# -- the cache is never stale ------------------------------------------------------------------


async def test_a_rename_through_the_cli_is_seen_and_the_old_name_never_comes_back(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    env = query_env(settings)
    t = "doors-cached"
    created = await send(worker, settings.task_queue, t, "CreateTenant", name="Old Name")
    await projected(pool, created.position)

    def hits_and_misses(stats: list[dict[str, Any]]) -> tuple[int, int]:
        counted = {"hits": 0, "misses": 0}
        counted |= next((s for s in stats if s["query"] == "GetTenantDetails"), {})
        return counted["hits"], counted["misses"]

    before = hits_and_misses(await acci_json(env, "cache", "stats"))
    first = await acci_json(env, "tenant", "get", "--tenant", t)
    second = await acci_json(env, "tenant", "get", "--tenant", t)
    assert first == second and first["name"] == "Old Name"
    after = hits_and_misses(await acci_json(env, "cache", "stats"))
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)  # a miss, then a hit
    assert cache_entries(REDIS_URL, settings, t, "GetTenantDetails")

    renamed = await acci(env, "tenant", "rename", "--tenant", t, "--name", "New Name")
    assert renamed.code == 0, renamed.err
    seen: list[str] = []

    async def new_name_shown() -> bool:
        seen.append((await acci_json(env, "tenant", "get", "--tenant", t))["name"])
        return seen[-1] == "New Name"

    await eventually(new_name_shown, within=30, what="`acci tenant get` to show the new name")
    assert set(seen) <= {"Old Name", "New Name"}
    limit = asyncio.Semaphore(4)

    async def later_read() -> str:
        async with limit:
            return str((await acci_json(env, "tenant", "get", "--tenant", t))["name"])

    later = await asyncio.gather(*(later_read() for _ in range(12)))
    assert later == ["New Name"] * 12


async def test_the_query_bus_never_returns_an_older_name_once_it_returned_a_newer_one(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    q, t = settings.task_queue, "doors-loop"
    created = await send(worker, q, t, "CreateTenant", name="Loop 00")
    await projected(pool, created.position)
    renames = 12
    done = asyncio.Event()
    # Every read: (started, ended, the rename it shows), from readers asking at once.
    reads: list[tuple[float, float, int]] = []

    async def writer() -> None:
        try:
            for i in range(1, renames + 1):
                await send(worker, q, t, "RenameTenant", name=f"Loop {i:02d}")
        finally:
            done.set()

    async def reader() -> None:
        shown = -1
        async with open_query_bus(settings, pool_max_size=2) as bus:
            while not (done.is_set() and shown == renames):
                started = time.monotonic()
                view = await bus.ask(GetTenantDetails(tenant_id=t))
                shown = int(view.name.removeprefix("Loop "))
                reads.append((started, time.monotonic(), shown))

    await asyncio.wait_for(asyncio.gather(writer(), reader(), reader(), reader()), 60)
    # The reads overlapped the renames (the projection may apply a few renames in one commit).
    assert len({shown for _, _, shown in reads}) >= 3
    by_end = iter(sorted(reads, key=lambda read: read[1]))
    ended = next(by_end, None)
    newest_so_far = -1
    for started, _, shown in sorted(reads):
        # Every read that ended before this one started showed at most what this one shows.
        while ended is not None and ended[1] < started:
            newest_so_far = max(newest_so_far, ended[2])
            ended = next(by_end, None)
        assert shown >= newest_so_far, f"rename {shown} read after rename {newest_so_far}"


# -- Redis down: queries still answer -----------------------------------------------------------


REDIS_NOTHING_ON_DISK = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")


class RedisServer:
    """A private `redis-server` on its own port (never the shared one), killed at the end."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            ["redis-server", "--port", str(self.port), *REDIS_NOTHING_ON_DISK],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                with redis.Redis.from_url(self.url, socket_timeout=0.5) as client:
                    return bool(client.ping())
            except redis.RedisError:
                return False

        await eventually(answers, within=20, what=f"redis-server on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest_asyncio.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_queries_answer_from_postgresql_while_redis_is_down_and_use_it_again_once_back(
    worker: Client, settings: Settings, pool: AsyncConnectionPool, private_redis: RedisServer
) -> None:
    t = "doors-outage"
    created = await send(worker, settings.task_queue, t, "CreateTenant", name="Outage")
    await projected(pool, created.position)
    env = query_env(settings, ACCI_REDIS_URL=private_redis.url)
    cached = await acci_json(env, "tenant", "get", "--tenant", t)
    assert cached["name"] == "Outage"
    assert cache_entries(private_redis.url, settings, t, "GetTenantDetails")

    private_redis.kill()
    started = time.monotonic()
    got, listed = await asyncio.gather(
        acci(env, "tenant", "get", "--tenant", t, "--json"),
        acci(env, "tenant", "list", "--json"),
    )
    took = time.monotonic() - started
    assert got.code == 0 and listed.code == 0, got.err + listed.err
    assert got.json() == cached
    assert t in [v["tenant_id"] for v in listed.json()["items"]]
    assert UNAVAILABLE in log_messages(got.err) and UNAVAILABLE in log_messages(listed.err)
    warning = next(json.loads(x) for x in got.err.splitlines() if UNAVAILABLE in x)
    assert warning["level"] == "warning"
    assert warning["redis"] == f"127.0.0.1:{private_redis.port}"
    assert took < 10, took

    await private_redis.start()  # the same port, empty
    assert not cache_entries(private_redis.url, settings, t, "GetTenantDetails")
    again = await acci(env, "tenant", "get", "--tenant", t, "--json")
    assert again.code == 0, again.err
    assert again.json() == cached
    assert UNAVAILABLE not in log_messages(again.err)
    assert cache_entries(private_redis.url, settings, t, "GetTenantDetails")
