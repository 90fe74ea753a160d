"""Publishing stored events to RabbitMQ, with publisher confirms."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from acci.eventstore import instruments
from acci.eventstore.errors import MessagingError
from acci.eventstore.messaging.amqp import BrokerConnection, declare_exchange
from acci.eventstore.messaging.messages import EXCHANGE, encode
from acci.eventstore.records import RecordedEvent


class EventPublisher:
    """Publishes stored events as persistent, confirmed messages; safe to share across threads."""

    def __init__(self, url: str, *, exchange: str = EXCHANGE, connect_timeout: float = 5.0) -> None:
        self._exchange = exchange
        self._broker = BrokerConnection(url, connect_timeout=connect_timeout, on_open=self._on_open)
        # pika connections are not thread-safe; Temporal runs activities in a thread pool.
        self._lock = threading.Lock()

    def _on_open(self, channel: Any) -> None:
        channel.confirm_delivery()
        declare_exchange(channel, self._exchange)

    def declare(self) -> None:
        """Declare the exchange (idempotent); also proves that the broker is reachable."""
        with self._lock:
            self._broker.run(
                lambda ch: declare_exchange(ch, self._exchange),
                doing=f"declare exchange {self._exchange!r}",
            )

    def publish_event(self, event: RecordedEvent, *, causation_id: str | None = None) -> None:
        """Publish one event and wait for the broker's confirm."""
        self.publish_events([event], causation_id=causation_id)

    def publish_events(
        self, events: Iterable[RecordedEvent], *, causation_id: str | None = None
    ) -> None:
        """Publish events in order; returns once all are confirmed, else raises MessagingError.
        A shredded tenant's events are left out.

        Each message's causation id is ``causation_id`` if given, else the one recorded in the
        event's metadata. Publishing the same events again is harmless: subscribers deduplicate
        on message_id.
        """
        # A shredded tenant's events (read by read_all as unreadable) are never sent: their data
        # is gone, and a message must not carry the ciphertext as if it were the event's.
        events = [e for e in events if e.readable]
        messages = [
            encode(event, causation_id=causation_id or _caused_by(event)) for event in events
        ]
        if not messages:
            return

        def publish(channel: Any) -> None:
            for key, properties, body in messages:
                # With confirms on, this returns after the broker's ack and raises on a nack.
                channel.basic_publish(self._exchange, key, body, properties, mandatory=False)

        started = time.perf_counter()
        try:
            with self._lock:
                self._broker.run(
                    publish,
                    doing=f"publish {len(messages)} event(s) to exchange {self._exchange!r}",
                )
        except MessagingError:
            instruments.PUBLISH_BACKLOG.failed(events)
            raise
        finally:
            instruments.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        instruments.EVENTS_PUBLISHED.inc(len(messages))
        instruments.PUBLISH_BACKLOG.published(events)

    def close(self) -> None:
        """Close the connection; a later publish opens a new one."""
        with self._lock:
            self._broker.reset()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _caused_by(event: RecordedEvent) -> str:
    """The recorded causation id, else the command's: a command's events are caused by it (the
    store does not repeat the command id in their metadata)."""
    value = event.metadata.get("causation_id")
    return value if isinstance(value, str) and value else str(event.command_id)
