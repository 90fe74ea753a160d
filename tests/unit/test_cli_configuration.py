"""Settings that do not parse stop `acci` with one ``error (configuration)`` line naming the
environment variable, exit status 1, and never the value given (it may be a password).

Each case runs the real `acci` in a process of its own, with services at ports nothing listens
on: nothing is reached, the settings are refused first.
"""

from __future__ import annotations

import pytest

from tests.unit.test_cli_generic import Ran, acci, nowhere  # noqa: F401 - the fixture

SECRET = "S3CRET-do-not-show"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # libpq's own error would quote the password it could not decode.
        (
            "ACCI_DATABASE_URL",
            f"postgresql://postgres:{SECRET}%zz@127.0.0.1:5432/acci",
            "ACCI_DATABASE_URL: is not a PostgreSQL connection URL libpq can parse",
        ),
        (
            "ACCI_DATABASE_URL",
            f"postgresql://postgres:{SECRET}@[::1/acci",
            "ACCI_DATABASE_URL: is not a PostgreSQL connection URL libpq can parse",
        ),
        (
            "ACCI_APP_DATABASE_URL",
            f"postgresql://acci_app:{SECRET}%@127.0.0.1/acci",
            "ACCI_APP_DATABASE_URL: is not a PostgreSQL connection URL libpq can parse",
        ),
        (
            "ACCI_RABBITMQ_URL",
            f"amqp://guest:{SECRET}@127.0.0.1:abc/%2F",
            "ACCI_RABBITMQ_URL: is not a URL (its host or port does not parse)",
        ),
        ("ACCI_REDIS_URL", f"x://:{SECRET}@y", "ACCI_REDIS_URL: must start with redis://"),
        ("ACCI_METRICS_PORT", "abc", "ACCI_METRICS_PORT: Input should be a valid integer"),
        ("ACCI_DB_POOL_MAX_SIZE", "-3", "ACCI_DB_POOL_MAX_SIZE: Input should be greater than"),
        ("ACCI_TRACING", "foo", "ACCI_TRACING: Input should be 'off', 'otlp' or 'console'"),
        ("ACCI_LOG_LEVEL", "LOUD", "ACCI_LOG_LEVEL: must be one of DEBUG, INFO, WARNING"),
        ("ACCI_CACHE_PREFIX", "a b", "ACCI_CACHE_PREFIX: String should match pattern"),
        ("ACCI_CODEC_CORS_ORIGINS", "notjson", "ACCI_CODEC_CORS_ORIGINS: is not JSON"),
        ("ACCI_BACKUP_TENANTS", "acme", "ACCI_BACKUP_TENANTS: is not JSON"),
        (
            "ACCI_PREVIOUS_MASTER_KEYS",
            SECRET,
            "ACCI_PREVIOUS_MASTER_KEYS: takes id=key pairs separated by commas",
        ),
        ("ACCI_ENCRYPTION", "true", "ACCI_ENCRYPTION=true needs ACCI_MASTER_KEY"),
    ],
)
def test_a_setting_that_does_not_parse_is_one_line_naming_it_and_never_its_value(
    nowhere: dict[str, str],  # noqa: F811 - the fixture
    variable: str,
    value: str,
    message: str,
) -> None:
    refused(acci({**nowhere, variable: value}, "tenant", "list"), message)


@pytest.mark.parametrize(
    "verb", [("check-services",), ("keys", "status"), ("db", "migrate"), ("worker",)]
)
def test_every_verb_refuses_them_alike(
    nowhere: dict[str, str],  # noqa: F811 - the fixture
    verb: tuple[str, ...],
) -> None:
    url = f"postgresql://postgres:{SECRET}%zz@127.0.0.1:5432/acci"
    message = "ACCI_DATABASE_URL: is not a PostgreSQL connection URL libpq can parse"
    refused(acci({**nowhere, "ACCI_DATABASE_URL": url}, *verb), message)


def refused(ran: Ran, message: str) -> None:
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err.startswith(f"error (configuration): {message}"), ran.err
    assert ran.err.count("\n") == 1, ran.err
    assert SECRET not in ran.err, ran.err
