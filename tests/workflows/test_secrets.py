"""No credential leaves ACCI (issue 14 §6), and with the payload codec on no command payload is in
clear in Temporal's history (§5), while the codec endpoint shows it to whoever has its token.

One worker process and a few `acci` commands (accepted, and rejected two ways), configured with
a password in every service URL (PostgreSQL's own and the app role's: trust auth ignores them;
RabbitMQ's and Redis's: real, on a user and a private server made for this module), a master
key and a codec token. Then every place they could surface is read: the worker's log, the CLI's
output and errors, both metrics endpoints, the codec endpoint's output, and the runs' histories
as `temporal workflow show --output json` prints them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from acci.workers.devserver import temporal_binary
from acci.workers.settings import Settings
from tests.workflows.conftest import eventually, free_port, rabbitmqctl, unique
from tests.workflows.test_durability import WorkerProcess

ACCI = str(Path(sys.executable).with_name("acci"))

PG_SECRET = f"pg-{uuid.uuid4().hex[:16]}"
APP_SECRET = f"app-{uuid.uuid4().hex[:16]}"
AMQP_SECRET = f"amqp-{uuid.uuid4().hex[:16]}"
REDIS_SECRET = f"redis-{uuid.uuid4().hex[:16]}"
CODEC_TOKEN = f"codec-{uuid.uuid4().hex[:16]}"
MASTER_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
SECRETS = {
    "PostgreSQL password": PG_SECRET,
    "app role password": APP_SECRET,
    "RabbitMQ password": AMQP_SECRET,
    "Redis password": REDIS_SECRET,
    "codec token": CODEC_TOKEN,
    "master key": MASTER_KEY,
}
# Values that only a command's payload carries (the tenant id is a search attribute, in clear).
NAME = f"Zanzibar Shipping {uuid.uuid4().hex[:8]}"
REASON = f"unpaid invoices {uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def rabbitmq_user() -> Iterator[str]:
    """A RabbitMQ user of this module, whose password is AMQP_SECRET."""
    user = f"acci-secrets-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_user", user, AMQP_SECRET)
    try:
        rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        yield user
    finally:
        rabbitmqctl("delete_user", user)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private redis-server asking for REDIS_SECRET (never the shared one)."""
    port = free_port()
    process = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--requirepass", REDIS_SECRET),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{REDIS_SECRET}@127.0.0.1:{port}/0"
    try:
        asyncio.run(eventually(lambda: _pings(url), within=20, what="the private redis-server"))
        yield url
    finally:
        process.kill()
        process.wait(10)


def _pings(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class Run:
    """What the module's scenario left behind, by where it was read."""

    env: dict[str, str]
    worker_log: Path
    codec_url: str
    closed_port: int = 0
    summary: str = ""
    workflow_ids: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


async def _acci(run: Run, name: str, *args: str, env: dict[str, str] | None = None) -> None:
    process = await asyncio.create_subprocess_exec(
        ACCI,
        *args,
        env=run.env | (env or {}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    run.exit_codes[name] = process.returncode
    run.texts[f"acci {name} (stdout and stderr)"] = out.decode() + err.decode()


async def _command(run: Run, name: str, *args: str) -> None:
    command_id = str(uuid.uuid4())
    run.workflow_ids[name] = f"cmd-{command_id}"
    await _acci(run, name, *args, "--command-id", command_id)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read()).decode()


async def show(run: Run, workflow_id: str, *, codec: bool, token: bool = True) -> str:
    """``temporal workflow show --output json`` of a run, through the codec endpoint or not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    if codec:
        env["TEMPORAL_CODEC_ENDPOINT"] = run.codec_url
        if token:
            env["TEMPORAL_CODEC_AUTH"] = f"Bearer {CODEC_TOKEN}"
    args = ["workflow", "show", "-w", workflow_id, "--output", "json"]
    args += ["--address", run.env["ACCI_TEMPORAL_ADDRESS"]]
    process = await asyncio.create_subprocess_exec(
        str(temporal_binary()),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return out.decode() + err.decode()


def readable(text: str) -> str:
    """``text`` and every base64 string in it decoded, twice over (a payload's data is base64
    in protobuf JSON, and an encrypted payload holds a serialized payload)."""
    parts = [text]
    for _ in range(2):
        decoded = []
        for token in re.findall(r"[A-Za-z0-9+/_=-]{12,}", parts[-1]):
            padded = token + "=" * (-len(token) % 4)
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    decoded.append(decode(padded).decode("utf-8", errors="ignore"))
                except (binascii.Error, ValueError):
                    continue
        parts.append("\n".join(decoded))
    return "\n".join(parts)


@pytest_asyncio.fixture(scope="module")
async def scenario(
    settings: Settings,
    pool: AsyncConnectionPool,
    rabbitmq_user: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Run]:
    folder = tmp_path_factory.mktemp("secrets")
    metrics_port, sdk_port, codec_port = free_port(), free_port(), free_port()
    database_url = settings.database_url.get_secret_value()
    queue = f"acci-secrets-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(settings, queue, folder / "worker.log")
    worker._env |= {
        "ACCI_DATABASE_URL": make_conninfo(database_url, password=PG_SECRET),
        "ACCI_APP_DATABASE_URL": make_conninfo(database_url, user="acci_app", password=APP_SECRET),
        "ACCI_RABBITMQ_URL": f"amqp://{rabbitmq_user}:{AMQP_SECRET}@127.0.0.1:5672/%2F",
        "ACCI_REDIS_URL": redis_url,
        "ACCI_MASTER_KEY": MASTER_KEY,
        "ACCI_MASTER_KEY_ID": "secrets-1",
        "ACCI_PAYLOAD_CODEC": "true",
        "ACCI_CODEC_AUTH_TOKEN": CODEC_TOKEN,
        "ACCI_CODEC_SERVER_PORT": str(codec_port),
        "ACCI_METRICS_PORT": str(metrics_port),
        "ACCI_TEMPORAL_METRICS_PORT": str(sdk_port),
    }
    await worker.start()
    codec_out = folder / "codec-server.out"
    with codec_out.open("wb") as out:
        codec = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            [ACCI, "codec-server"], env=worker._env, stdout=out, stderr=subprocess.STDOUT
        )
    codec_url = f"http://127.0.0.1:{codec_port}"
    run = Run(env=worker._env, worker_log=folder / "worker.log", codec_url=codec_url)
    try:
        await eventually(
            lambda: "codec endpoint" in codec_out.read_text(), what="the codec endpoint"
        )
        tenant, missing = unique("secrets"), unique("secrets-missing")
        run.summary = f"CreateTenant {tenant}"  # the run's summary (user metadata)
        await _command(run, "create", "tenant", "create", "-t", tenant, "--name", NAME)
        await _command(run, "invalid", "tenant", "create", "-t", unique("bad"), "--name", "")
        await _command(run, "denied", "tenant", "suspend", "-t", missing, "--reason", REASON)
        await _acci(run, "get", "tenant", "get", "-t", tenant, "--json")
        await _acci(run, "health", "health", "--json")
        await _acci(run, "cache", "cache", "stats")
        # Errors that name the service they could not reach (nothing listens on `closed`).
        closed = run.closed_port = free_port()
        await _acci(
            run,
            "redis-down",
            *("cache", "stats"),
            env={"ACCI_REDIS_URL": f"redis://:{REDIS_SECRET}@127.0.0.1:{closed}/0"},
        )
        # Both of the query's URLs: a tenant query reads as acci_app, on the app URL.
        down = make_conninfo(database_url, port=closed, password=PG_SECRET)
        app_down = make_conninfo(database_url, port=closed, user="acci_app", password=APP_SECRET)
        await _acci(
            run,
            "db-down",
            *("tenant", "get", "-t", tenant),
            env={"ACCI_DATABASE_URL": down, "ACCI_APP_DATABASE_URL": app_down},
        )
        run.texts["/metrics"] = await asyncio.to_thread(
            _get, f"http://127.0.0.1:{metrics_port}/metrics"
        )
        run.texts["the Temporal SDK's metrics"] = await asyncio.to_thread(
            _get, f"http://127.0.0.1:{sdk_port}/metrics"
        )
        for name, workflow_id in run.workflow_ids.items():
            history = await show(run, workflow_id, codec=False)
            run.texts[f"history of {name} (decoded)"] = readable(history)
        yield run
    finally:
        codec.terminate()
        codec.wait(20)
        worker.stop()
        run.texts["worker log"] = run.worker_log.read_text()
        run.texts["codec endpoint output"] = codec_out.read_text()
        # Read after both processes ended: the last lines are in.
        _assert_no_secret(run.texts)


def _assert_no_secret(texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for what, secret in SECRETS.items():
            assert secret not in text, f"the {what} is in the {where}"


def test_the_commands_ran_one_accepted_two_rejected(scenario: Run) -> None:
    codes = scenario.exit_codes
    assert (codes["create"], codes["invalid"], codes["denied"]) == (0, 1, 1), scenario.texts
    assert codes["get"] == 0 and NAME in scenario.texts["acci get (stdout and stderr)"]
    assert "error (validation)" in scenario.texts["acci invalid (stdout and stderr)"]
    assert "error (domain)" in scenario.texts["acci denied (stdout and stderr)"]
    assert codes["redis-down"] == codes["db-down"] == 1
    assert f":{scenario.closed_port}" in scenario.texts["acci db-down (stdout and stderr)"]


def test_no_configured_secret_is_in_any_output_metrics_or_history(scenario: Run) -> None:
    # The histories were read, in full.
    for name, workflow_id in scenario.workflow_ids.items():
        assert workflow_id in scenario.texts[f"history of {name} (decoded)"]
    assert "acci_commands_total" in scenario.texts["/metrics"]
    _assert_no_secret(scenario.texts)  # again once the processes stop (the fixture's end)


def test_with_the_codec_on_no_history_holds_a_payload_in_clear(scenario: Run) -> None:
    for name in scenario.workflow_ids:
        history = scenario.texts[f"history of {name} (decoded)"]
        assert "binary/encrypted" in history
        assert NAME not in history and REASON not in history
        assert scenario.summary not in history
        # The rejection's message is encrypted too; its type is not.
        assert "Encoded failure" in history or name == "create"


async def test_the_codec_endpoint_shows_the_payloads_to_a_holder_of_the_token(
    scenario: Run,
) -> None:
    created = readable(await show(scenario, scenario.workflow_ids["create"], codec=True))
    assert NAME in created and scenario.summary in created
    denied = readable(await show(scenario, scenario.workflow_ids["denied"], codec=True))
    assert REASON in denied
    _assert_no_secret({"decoded history": created + denied})


async def test_the_codec_endpoint_shows_nothing_without_the_token(scenario: Run) -> None:
    refused = await show(scenario, scenario.workflow_ids["create"], codec=True, token=False)
    assert NAME not in readable(refused)
