"""An error is one line wherever a person reads it: PostgreSQL's messages go on with the
statement and a caret under it, which neither a dead letter's text nor `acci` repeats."""

from __future__ import annotations

import pytest
import typer

from acci.readmodels.reports import describe
from acci.workers.cli_support import invoke

POSTGRES_STYLE = (
    'relation "read_models.books" does not exist\n'
    "LINE 1: SELECT * FROM read_models.books WHERE tenant_id = $1\n"
    "                      ^"
)


class UndefinedTable(Exception):
    """Stands for psycopg's error of that name: its str() is PostgreSQL's message."""


def test_a_failures_text_is_the_first_line_of_its_message() -> None:
    assert describe(UndefinedTable(POSTGRES_STYLE)) == (
        'UndefinedTable: relation "read_models.books" does not exist'
    )
    assert describe(RuntimeError("")) == "RuntimeError: (no message)"


def test_an_unexpected_failure_of_a_verb_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    app = typer.Typer()

    @app.command()
    def ask() -> None:
        raise UndefinedTable(POSTGRES_STYLE)

    assert invoke(app, []) == 1
    assert capsys.readouterr().err == (
        'error (internal): UndefinedTable: relation "read_models.books" does not exist\n'
    )
