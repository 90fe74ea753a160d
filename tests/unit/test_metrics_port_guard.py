"""The test run leaves the default metrics port to a `make demo` or worker running beside it."""

from __future__ import annotations

from acci.workers.settings import Settings


def test_tests_never_serve_metrics_on_the_default_port() -> None:
    # tests/conftest.py sets ACCI_METRICS_PORT=0 for the run and every process it starts.
    assert Settings.model_fields["metrics_port"].default == 9464
    assert Settings().metrics_port == 0
