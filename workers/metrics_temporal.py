"""The Temporal SDK's own metrics (workflow task latency, activity failures, sticky cache, ...).

The SDK's core exports them through a Prometheus endpoint of its runtime, on a port of its own
(``temporal_metrics_port``, same host as ACCI's). A runtime is process-wide and serves until
the process exits, so the worker process makes at most one, and other CLI calls none.
"""

from __future__ import annotations

import logging
import threading

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = logging.getLogger(__name__)

_lock = threading.Lock()
_made: dict[str, Runtime | None] = {}


def prometheus_config(address: str) -> PrometheusConfig:
    """How the SDK's metrics are served at ``address`` (``host:port``): the names Prometheus
    expects (counters end in ``_total``, durations are in seconds), as the dashboard reads them."""
    return PrometheusConfig(
        bind_address=address, counters_total_suffix=True, durations_as_seconds=True
    )


def metrics_runtime(host: str, port: int) -> Runtime | None:
    """The process's runtime serving SDK metrics on ``http://host:port/metrics``.

    None when ``port`` is 0, or when the endpoint could not be bound (logged: metrics are worth
    a warning, not a worker that refuses to start); the client then uses the SDK's default
    runtime. Asked again, it returns the first answer (a second endpoint would clash).
    """
    if port == 0:
        return None
    with _lock:
        if "runtime" in _made:
            return _made["runtime"]
        address = f"{host}:{port}"
        try:
            runtime: Runtime | None = Runtime(
                telemetry=TelemetryConfig(metrics=prometheus_config(address))
            )
        except Exception as e:  # the core reports a taken port as a plain exception
            log.warning("Temporal SDK metrics not served", extra={"port": port, "error": str(e)})
            runtime = None
        else:
            log.info("Temporal SDK metrics endpoint", extra={"url": f"http://{address}/metrics"})
        _made["runtime"] = runtime
        return runtime
