"""The event store's Prometheus instruments: appends, global-order reads and publishing.

Defined here, below everything that uses them, so the store and the publisher observe them
directly (a histogram observation costs about a microsecond: nothing next to a round trip).
The worker's metrics endpoint serves them from prometheus_client's default registry.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from acci.eventstore.records import AppendResult, RecordedEvent

# Appends and pages are milliseconds; a stuck one is seconds.
_FAST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

APPEND_SECONDS: Final = Histogram(
    "acci_append_seconds",
    "Time to append one command's events (one transaction, retried races and duplicates included)",
    buckets=_FAST_BUCKETS,
)
EVENTS_APPENDED: Final = Counter(
    "acci_events_appended",
    "Events stored in the event store by this process (a duplicate append stores none)",
    ["aggregate_type"],
)
READ_ALL_BATCH_SECONDS: Final = Histogram(
    "acci_read_all_batch_seconds",
    "Time to read one page of the gap-free global order (read_all)",
    buckets=_FAST_BUCKETS,
)
EVENTS_PUBLISHED: Final = Counter(
    "acci_events_published",
    "Events published to RabbitMQ and confirmed by the broker (a re-publish counts again)",
)
PUBLISH_SECONDS: Final = Histogram(
    "acci_publish_seconds",
    "Time of one publish of stored events to RabbitMQ, until the broker confirmed them"
    " (failed publishes included)",
    buckets=_FAST_BUCKETS,
)


def appended(results: Iterable[AppendResult]) -> None:
    """Count the events an append stored (its duplicates stored none)."""
    for result in results:
        if not result.duplicate and result.events:
            EVENTS_APPENDED.labels(result.events[0].aggregate_type).inc(len(result.events))


class PublishBacklog:
    """Events stored whose publish failed in this process and that no later publish has sent.

    A command's events are stored, then published; a failed publish is retried by the command's
    workflow (until RabbitMQ is back), on this worker or another. An event enters the backlog
    when a publish of it fails and leaves it when a publish of it succeeds. Entries older than
    ``forget_after`` seconds (a command whose workflow was terminated, or that another worker
    finished) are forgotten. Thread-safe: publishing runs in threads.
    """

    def __init__(self, *, forget_after: float = 3_600.0) -> None:
        self._lock = threading.Lock()
        self._failed: dict[uuid.UUID, float] = {}
        self._forget_after = forget_after

    def failed(self, events: Iterable[RecordedEvent]) -> None:
        """A publish of ``events`` failed: they wait for another."""
        now = time.monotonic()
        with self._lock:
            for event in events:
                self._failed.setdefault(event.event_id, now)

    def published(self, events: Iterable[RecordedEvent]) -> None:
        """``events`` were confirmed by the broker."""
        with self._lock:
            if self._failed:
                for event in events:
                    self._failed.pop(event.event_id, None)

    def size(self) -> int:
        """Events waiting for a publish that succeeds (after forgetting the stale ones)."""
        horizon = time.monotonic() - self._forget_after
        with self._lock:
            stale = [k for k, since in self._failed.items() if since < horizon]
            for key in stale:
                del self._failed[key]
            return len(self._failed)


PUBLISH_BACKLOG: Final = PublishBacklog()

PUBLISH_BACKLOG_EVENTS: Final = Gauge(
    "acci_publish_backlog_events",
    "Events stored but not published yet: a publish of them failed in this process and no later"
    " one has confirmed them (RabbitMQ unreachable; their commands' workflows keep retrying)",
)
PUBLISH_BACKLOG_EVENTS.set_function(PUBLISH_BACKLOG.size)
