"""Projection and event-horizon metrics, measured from the database at each scrape.

Lag is measured when Prometheus asks, from each checkpoint to the newest committed event, so a
paused projection's lag grows while it is paused (a gauge set after each batch would freeze).
State combines the checkpoint (paused) with what this worker's projection activities last saw
(failing, stopped); a worker that never ran a projection leaves its state to the one that
does (aggregate across workers with ``max by (projection, state)``). The scrape reads on a
connection of its own, outside the worker's pool, with short timeouts: a slow database makes
the scrape short of these families, never slow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

import psycopg
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from acci.activities.models import ProjectionBatchResult
from acci.eventstore.db import conninfo
from acci.readmodels.standing import ProjectionStanding, horizon_stall, projection_standings

log = logging.getLogger(__name__)

STATES: Final = ("running", "paused", "failing", "stopped")


class ProjectionActivity:
    """What this worker's projection activities last saw of each projection (thread-safe).

    A projection is failing while a batch of it failed here (reported a failing event, or
    raised) within the last ``failing_for`` seconds and none has succeeded here since: a
    failing projection is retried every few seconds (at most ``ACCI_PROJECTION_RETRY_MAX_MS``
    apart), so the state holds while it fails and clears once another worker runs it well. It
    is stopped when a batch of it ran here once, none is running now, and none ran for
    ``stopped_after`` seconds. A projection no batch of which ever ran here has no state from
    this worker (another worker runs it), unless its checkpoint says paused.
    """

    def __init__(self, *, stopped_after: float = 300.0, failing_for: float = 120.0) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._last_seen: dict[str, float] = {}
        self._failed_at: dict[str, float] = {}
        self._stopped_after = stopped_after
        self._failing_for = failing_for

    def started(self, projection: str) -> None:
        """A batch activity of ``projection`` started."""
        with self._lock:
            self._running[projection] = self._running.get(projection, 0) + 1
            self._last_seen[projection] = time.monotonic()

    def ended(self, projection: str, *, raised: bool) -> None:
        """A batch activity of ``projection`` returned, or raised."""
        with self._lock:
            self._running[projection] = max(0, self._running.get(projection, 0) - 1)
            self._last_seen[projection] = time.monotonic()
            if raised:
                self._failed_at[projection] = time.monotonic()

    def reported(self, result: ProjectionBatchResult) -> None:
        """A batch's report (ProjectionActivities' ``on_report``)."""
        with self._lock:
            self._last_seen[result.projection] = time.monotonic()
            if result.failure is not None:
                self._failed_at[result.projection] = time.monotonic()
            else:
                self._failed_at.pop(result.projection, None)

    def state(self, projection: str, *, paused: bool) -> str | None:
        """``projection``'s state, given whether its checkpoint is paused (None: this worker
        has never run a batch of it, and it is not paused)."""
        if paused:
            return "paused"
        now = time.monotonic()
        with self._lock:
            failed = self._failed_at.get(projection)
            if failed is not None and now - failed <= self._failing_for:
                return "failing"
            seen = self._last_seen.get(projection)
            if seen is None:
                return None
            if self._running.get(projection, 0) == 0 and now - seen > self._stopped_after:
                return "stopped"
        return "running"


class DatabaseMetrics(Collector):
    """Serves the projections' lag, state and dead letters and the gap-free horizon's stall."""

    def __init__(
        self,
        database_url: str,
        projections: Sequence[str],
        activity: ProjectionActivity,
        *,
        timeout_ms: int = 1_000,
    ) -> None:
        self._conninfo = conninfo(
            database_url,
            idle_in_transaction_timeout_ms=timeout_ms,
            statement_timeout_ms=timeout_ms,
        )
        self._projections = list(projections)
        self._activity = activity
        # libpq waits at least 2 s for a connection.
        self._connect_timeout = max(2, round(timeout_ms / 1000))
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # scrapes may overlap: one connection, one at a time

    def describe(self) -> Iterable[Metric]:
        # Named without a database round trip (registration calls this).
        return _families()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            try:
                conn = self._connection()
                stall = horizon_stall(conn)
                standings = projection_standings(conn, self._projections)
            except psycopg.Error as e:
                log.debug("metrics: database not read", extra={"error": str(e)})
                self._reset()
                return []
        lag_events, lag_seconds, state, dead, horizon_events, horizon_seconds = _families()
        horizon_events.add_metric([], stall.events)
        horizon_seconds.add_metric([], stall.seconds)
        for s in standings:
            lag_events.add_metric([s.projection], s.lag.events)
            lag_seconds.add_metric([s.projection], s.lag.seconds)
            dead.add_metric([s.projection], s.dead_letters)
            current = self._state(s)
            if current is None:
                continue  # never run here: the worker that runs it says
            for name in STATES:
                state.add_metric([s.projection, name], 1.0 if name == current else 0.0)
        return [lag_events, lag_seconds, state, dead, horizon_events, horizon_seconds]

    def _state(self, standing: ProjectionStanding) -> str | None:
        return self._activity.state(standing.projection, paused=standing.status == "paused")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
            )
        return self._conn

    def _reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def close(self) -> None:
        """Close the scrape's connection."""
        with self._lock:
            self._reset()


def _families() -> list[GaugeMetricFamily]:
    return [
        GaugeMetricFamily(
            "acci_projection_lag_events",
            "Events committed in the event store that the projection has not applied yet"
            " (capped at 10000), measured at the scrape, paused or not",
            labels=["projection"],
        ),
        GaugeMetricFamily(
            "acci_projection_lag_seconds",
            "Age of the oldest event the projection has not applied yet (0 when caught up)",
            labels=["projection"],
        ),
        GaugeMetricFamily(
            "acci_projection_state",
            "1 for the projection's current state (running, paused, failing, stopped), else 0",
            labels=["projection", "state"],
        ),
        GaugeMetricFamily(
            "acci_projection_dead_letters",
            "Events parked by the projection and not resolved (retried or skipped) yet",
            labels=["projection"],
        ),
        GaugeMetricFamily(
            "acci_event_horizon_lag_events",
            "Committed events that gap-free readers cannot reach yet because an older"
            " event-writing transaction is still open (capped at 10000)",
        ),
        GaugeMetricFamily(
            "acci_event_horizon_stall_seconds",
            "How long the open event-writing transaction holding committed events back from"
            " gap-free readers has been open (0 when nothing is held back)",
        ),
    ]
