"""The worker's Prometheus metrics: projection lag, and the HTTP endpoint that serves them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from prometheus_client import Gauge, start_http_server

from workflows.models import ProjectionBatchResult

log = logging.getLogger(__name__)

PROJECTION_LAG_EVENTS: Final = Gauge(
    "acci_projection_lag_events",
    "Events visible in the event store that the projection has not applied yet (capped at 100000)",
    ["projection"],
)
PROJECTION_LAG_SECONDS: Final = Gauge(
    "acci_projection_lag_seconds",
    "Age of the oldest event the projection has not applied yet (0 when caught up)",
    ["projection"],
)


def observe_projection(result: ProjectionBatchResult) -> None:
    """Record a projection batch's lag."""
    PROJECTION_LAG_EVENTS.labels(result.projection).set(result.lag_events)
    PROJECTION_LAG_SECONDS.labels(result.projection).set(result.lag_seconds)


@contextmanager
def metrics_endpoint(host: str, port: int) -> Iterator[int | None]:
    """Serve the process's metrics on ``http://host:port/metrics`` until the block exits.

    Yields the port, or None when the port is 0 or taken (logged: metrics are worth a warning,
    not a worker that refuses to start).
    """
    if port == 0:
        yield None
        return
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as e:
        log.warning("metrics endpoint not started", extra={"port": port, "error": str(e)})
        yield None
        return
    log.info("metrics endpoint", extra={"url": f"http://{host}:{port}/metrics"})
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
