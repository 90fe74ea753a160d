"""What the benchmarks share: percentiles, a Temporal dev server, a fresh database, quiet logs.

Imported by the scripts in this folder (``python bench/<name>.py`` puts the folder on the path).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from temporalio.testing import WorkflowEnvironment

from acci.workers.converter import DATA_CONVERTER
from acci.workers.devserver import temporal_binary
from acci.workflows.command import SEARCH_ATTRIBUTES


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class WarningCounter(logging.Filter):
    """Counts (and hides) warnings: retries a run recovers from are not the table."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.count += 1
            return False
        return True


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr, for child processes started meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@asynccontextmanager
async def dev_server(db_file: str | None = None) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server as the tests start one: in memory, or over a SQLite file."""
    with stdout_to_stderr():  # its banner is not part of the table
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_binary()),
            data_converter=DATA_CONVERTER,
            search_attributes=SEARCH_ATTRIBUTES,
            dev_server_database_filename=db_file,
        )
    try:
        yield env
    finally:
        await env.shutdown()


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name``."""
    params = conninfo_to_dict(server_url)
    params["dbname"] = name
    return make_conninfo("", **params)


def recreate_database(server_url: str, name: str) -> None:
    """Drop the database ``name`` (whoever is connected) and create it empty."""
    database = sql.Identifier(name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))
