"""What `make demo` shows: a clean scenario on stdout, the logs in a file it names, no secrets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.integration.query_rows import delete_keys
from tests.workflows.conftest import free_port

ACCI = str(Path(sys.executable).with_name("acci"))


@pytest.fixture(scope="module")
def password(database_url: str) -> str:
    """The password the demo's database URL carries (trust auth ignores a made-up one)."""
    return str(conninfo_to_dict(database_url).get("password") or f"pw-{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def demo_url(database_url: str, password: str) -> str:
    """The module's database as a URL with a password in it, as a user's setting would be."""
    params = conninfo_to_dict(database_url)
    return (
        f"postgresql://{params.get('user', 'postgres')}:{password}"
        f"@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{params['dbname']}"
    )


@pytest.fixture
def env(demo_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """`acci dev` on ports, a data directory and cache keys of its own."""
    prefix = f"acci-test-{uuid.uuid4().hex[:12]}"
    yield {
        **os.environ,
        "ACCI_DATABASE_URL": demo_url,
        "ACCI_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "ACCI_TEMPORAL_UI_PORT": str(free_port()),
        "ACCI_DATA_DIR": str(tmp_path / "data"),
        "ACCI_CACHE_PREFIX": prefix,
        "ACCI_METRICS_PORT": "0",
    }
    delete_keys(prefix)


def acci_dev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACCI, "dev", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_the_demo_reads_cleanly_and_names_its_log_file(
    env: dict[str, str], demo_url: str, password: str
) -> None:
    metrics_port = free_port()
    out = acci_dev({**env, "ACCI_METRICS_PORT": str(metrics_port)}, "--demo", "--exit")
    data = Path(env["ACCI_DATA_DIR"])
    assert out.returncode == 0, out.stdout + out.stderr
    # The scenario alone on the terminal: no JSON log lines, no tracebacks.
    for stream in (out.stdout, out.stderr):
        assert "Traceback" not in stream
        assert '"level":' not in stream
    assert out.stdout.count(" REJECTED ") == 3
    assert out.stdout.rstrip().endswith(
        f"logs: {data / 'acci-dev.log'} (ACCI), {data / 'temporal.log'} (Temporal dev server)"
    )
    # The database actually used, without its password.
    shown = demo_url.replace(f":{password}@", "@")
    assert f"  the event store     psql '{shown}' -c " in out.stdout
    assert f"  metrics             http://127.0.0.1:{metrics_port}/metrics" in out.stdout
    log = (data / "acci-dev.log").read_text()
    assert password not in out.stdout + out.stderr + log
    # The logs went to the file, the rejections among them, as one line each.
    records = [json.loads(line) for line in log.splitlines()]
    assert any(r["msg"] == "worker polling" for r in records)
    rejected = [
        r for r in records if r.get("error_type") in ("CommandValidationError", "DomainError")
    ]
    assert len(rejected) == 3
    assert "Traceback" not in log


def test_acci_dev_says_when_the_metrics_port_is_taken(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = acci_dev({**env, "ACCI_METRICS_PORT": str(port)}, "--exit")
    assert out.returncode == 0, out.stdout + out.stderr
    log = Path(env["ACCI_DATA_DIR"]) / "acci-dev.log"
    assert (
        f"  metrics             not served: could not listen on 127.0.0.1:{port} (see {log})"
        in out.stdout
    )
    assert f"http://127.0.0.1:{port}/metrics" not in out.stdout


def test_acci_dev_says_when_metrics_are_off(env: dict[str, str]) -> None:
    out = acci_dev(env, "--exit")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "  metrics             off (ACCI_METRICS_PORT=0)" in out.stdout


def test_acci_dev_says_in_one_line_when_its_temporal_port_is_taken(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        out = acci_dev({**env, "ACCI_TEMPORAL_ADDRESS": address}, "--exit")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (
        f"error (unavailable): something already listens on {address}; stop it, or set"
        " ACCI_TEMPORAL_ADDRESS to use that server without `acci dev`\n"
    )
