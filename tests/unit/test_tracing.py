"""Whether tracing is on, from ACCI_TRACING and the standard OTEL_* variables; off, nothing of
OpenTelemetry is even imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from acci.workers.settings import Settings
from acci.workers.tracing import tracing_mode

OTEL_VARIABLES = (
    "ACCI_TRACING",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture(autouse=True)
def no_tracing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("variables", "mode"),
    [
        ({}, "off"),
        ({"ACCI_TRACING": "console"}, "console"),
        ({"ACCI_TRACING": "otlp"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "zipkin,otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, "off"),
        ({"ACCI_TRACING": "off", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, "off"),
        ({"ACCI_TRACING": "otlp", "OTEL_SDK_DISABLED": "true"}, "off"),
    ],
)
def test_tracing_is_on_only_when_configured(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], mode: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert tracing_mode(Settings()) == mode


def test_an_unknown_tracing_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCI_TRACING", "jaeger")
    with pytest.raises(ValueError, match="tracing"):
        Settings()


def test_off_nothing_is_installed_nor_imported() -> None:
    script = """
import sys
import psycopg
from opentelemetry import trace
from acci.workers.settings import Settings
from acci.workers.tracing import configure_tracing
import acci.workers.worker

assert configure_tracing(Settings()) == [], "interceptors returned"
assert not hasattr(psycopg.AsyncConnection.connect, "__wrapped__"), "psycopg instrumented"
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider", "provider set"
loaded = [m for m in ("opentelemetry.sdk", "temporalio.contrib.opentelemetry",
          "opentelemetry.instrumentation.psycopg", "opentelemetry.instrumentation.pika")
          if m in sys.modules]
assert not loaded, loaded
"""
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
