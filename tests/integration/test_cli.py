"""The ``acci`` command line, run as a user runs it: a process, its output and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import drop_database

ACCI = str(Path(sys.executable).with_name("acci"))


def acci(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACCI_DATABASE_URL": database_url}
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


def test_demo_runs_and_a_second_run_resends_the_same_commands(fresh_url: str) -> None:
    first = acci(fresh_url, "demo")
    assert first.returncode == 0, first.stderr
    assert "CreateTenant     Tenant demo-acme -> v1" in first.stdout
    assert "REJECTED (validation): invalid RegisterUser: email" in first.stdout
    assert "REJECTED (concurrency)" in first.stdout
    assert "[re-sent: first result, nothing stored]" in first.stdout
    second = acci(fresh_url, "demo")
    assert second.returncode == 0, second.stderr
    assert "CreateTenant     Tenant demo-acme -> v1, 1 event(s) at" in second.stdout
    assert second.stdout.count("[re-sent: first result, nothing stored]") >= 5


def test_events_prints_the_audit_trail_as_json(fresh_url: str) -> None:
    out = acci(fresh_url, "events", "demo-acme", "--tenant", "demo-acme", "--json")
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    assert [e["sequence_number"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event_type"] == "TenantCreated"


def test_aggregate_prints_state_at_a_version(fresh_url: str) -> None:
    out = acci(fresh_url, "aggregate", "demo-acme", "--tenant", "demo-acme", "--version", "1")
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    assert (state["version"], state["state"]["status"], state["state"]["name"]) == (
        1,
        "active",
        "Acme Corporation",
    )


def test_bad_input_on_the_command_line_is_a_typed_error_and_exit_1(fresh_url: str) -> None:
    out = acci(fresh_url, "events", "x'; DROP TABLE event_store.events;--", "--tenant", "demo-acme")
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
