"""Service URLs shown to a user never carry a password."""

from __future__ import annotations

import pytest

from acci.workers.checks import ServiceCheck
from acci.workers.health import HealthReport
from acci.workers.urls import where, without_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://acci:s3cret@db:5432/acci", "postgresql://acci@db:5432/acci"),
        ("postgresql://postgres@127.0.0.1:5432/acci", "postgresql://postgres@127.0.0.1:5432/acci"),
        ("postgresql://:s3cret@db/acci", "postgresql://db/acci"),
        ("postgresql://u:p%40ss@db/acci?sslmode=require", "postgresql://u@db/acci?sslmode=require"),
        (
            "postgresql://db/acci?password=s3cret&sslmode=require",
            "postgresql://db/acci?sslmode=require",
        ),
        ("host=db password=s3cret dbname=acci", "host=db dbname=acci"),
        ("host=db password='s3 cret' dbname=acci", "host=db dbname=acci"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert without_password(url) == shown


def test_where_keeps_only_the_host_and_path() -> None:
    assert where("amqp://guest:guest@127.0.0.1:5672/%2F") == "127.0.0.1:5672/%2F"


def test_a_url_shown_by_the_health_checks_has_no_password_in_its_query_either() -> None:
    shown = where(without_password("postgresql://acci@db:5432/acci?password=s3cret&sslmode=off"))
    assert "s3cret" not in shown and shown == "db:5432/acci?sslmode=off"


def test_a_health_report_shows_no_password_a_service_error_quotes() -> None:
    failed = ServiceCheck("PostgreSQL", False, "invalid URI: postgresql://acci:s3cret@db/acci")
    report = HealthReport([failed])
    assert "s3cret" not in str(report.as_json())
    assert report.failing == ["PostgreSQL"]
