"""Subscribing to event types over RabbitMQ, exactly-once in effect through an inbox table.

Each message is handled in one PostgreSQL transaction that also inserts its ``message_id``
into ``subscriptions.inbox``; the ack is sent only after that commit. A redelivery (or a
re-publish of the same event) finds the inbox row and is acked without calling the handler.

Handler failures: the transaction rolls back, the attempt is counted in
``subscriptions.inbox_failures`` and the message is nacked with requeue, and the handler's
exception propagates out of ``consume`` so the caller can back off before consuming again.
The ``max_attempts``-th failure instead rejects the message to the dead-letter queue
``acci.sub.<subscriber>.dlq`` (the failures row keeps the last error and ``parked_at``), and
consuming goes on. Malformed messages go to the same dead-letter queue at once.
Nothing is dropped silently.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import psycopg

from acci.eventstore import validation
from acci.eventstore.db import conninfo
from acci.eventstore.errors import InvalidIdentifierError, translated
from acci.eventstore.messaging.amqp import FAILURES, BrokerConnection, declare_exchange
from acci.eventstore.messaging.messages import (
    EXCHANGE,
    MessageFormatError,
    ReceivedEvent,
    binding_key,
    decode,
)

log = logging.getLogger(__name__)

# What consume calls: the event, and the connection whose open transaction holds its inbox row.
Handler = Callable[[ReceivedEvent, psycopg.Connection[Any]], None]

QUEUE_PREFIX: Final = "acci.sub."
_SUBSCRIBER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_MAX_ERROR_CHARS: Final = 2_000

_INSERT_INBOX: Final = (
    "INSERT INTO subscriptions.inbox (subscriber, message_id, event_type, tenant_id)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (subscriber, message_id) DO NOTHING"
)
_CLEAR_FAILURES: Final = (
    "DELETE FROM subscriptions.inbox_failures WHERE subscriber = %s AND message_id = %s"
)
# Counts one more failed attempt; the one that reaches the limit marks the message parked.
_RECORD_FAILURE: Final = (
    "INSERT INTO subscriptions.inbox_failures AS f"
    " (subscriber, message_id, event_type, tenant_id, attempts, last_error, parked_at)"
    " VALUES (%(subscriber)s, %(message_id)s, %(event_type)s, %(tenant_id)s, 1, %(error)s,"
    " CASE WHEN 1 >= %(max_attempts)s THEN now() END)"
    " ON CONFLICT (subscriber, message_id) DO UPDATE SET"
    " attempts = f.attempts + 1, last_error = EXCLUDED.last_error, last_failed_at = now(),"
    " parked_at = CASE WHEN f.attempts + 1 >= %(max_attempts)s THEN now() END"
    " RETURNING attempts, parked_at IS NOT NULL"
)


class _Outcome(enum.Enum):
    HANDLED = "handled"  # the handler ran and its writes committed: ack
    DUPLICATE = "duplicate"  # already in the inbox: ack without calling the handler
    DEAD_LETTERED = "dead-lettered"  # malformed, or failed max_attempts times: reject
    FAILED = "failed"  # the handler raised: nack for redelivery, then raise


class EventSubscriber:
    """A durable queue of chosen event types, consumed with an inbox; one per thread."""

    def __init__(
        self,
        url: str,
        *,
        database_url: str,
        subscriber: str,
        exchange: str = EXCHANGE,
        prefetch: int = 100,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
    ) -> None:
        if not isinstance(subscriber, str) or not _SUBSCRIBER.fullmatch(subscriber):
            raise InvalidIdentifierError(
                f"invalid subscriber name {subscriber!r}: must match {_SUBSCRIBER.pattern}"
            )
        if not 0 < prefetch <= 65_535:
            raise ValueError(f"prefetch must be 1..65535, got {prefetch}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.subscriber = subscriber
        self.queue = f"{QUEUE_PREFIX}{subscriber}"
        self.dead_letter_queue = f"{self.queue}.dlq"
        self.exchange = exchange
        self.dead_letter_exchange = f"{exchange}.dlx"
        self._prefetch = prefetch
        self._max_attempts = max_attempts
        self._conninfo = conninfo(
            database_url, idle_in_transaction_timeout_ms=30_000, statement_timeout_ms=60_000
        )
        self._connect_timeout = connect_timeout
        self._db: psycopg.Connection[Any] | None = None
        self._broker = BrokerConnection(
            url, connect_timeout=connect_timeout, on_open=self._declare_queues
        )

    def _declare_queues(self, channel: Any) -> None:
        declare_exchange(channel, self.exchange)
        channel.exchange_declare(
            exchange=self.dead_letter_exchange, exchange_type="direct", durable=True
        )
        channel.queue_declare(queue=self.dead_letter_queue, durable=True)
        channel.queue_bind(
            queue=self.dead_letter_queue,
            exchange=self.dead_letter_exchange,
            routing_key=self.dead_letter_queue,
        )
        channel.queue_declare(
            queue=self.queue,
            durable=True,
            arguments={
                "x-dead-letter-exchange": self.dead_letter_exchange,
                # Each subscriber's rejects reach its own DLQ through the shared DLX.
                "x-dead-letter-routing-key": self.dead_letter_queue,
            },
        )

    # -- topology ------------------------------------------------------------------------

    def subscribe(self, event_types: Sequence[str], *, tenant_id: str | None = None) -> str:
        """Bind the queue to these event types (of one tenant, or all); returns the queue name."""
        keys = self._binding_keys(event_types, tenant_id)

        def bind(channel: Any) -> None:
            for key in keys:
                channel.queue_bind(queue=self.queue, exchange=self.exchange, routing_key=key)

        self._broker.run(bind, doing=f"bind queue {self.queue!r} to {keys}")
        return self.queue

    def unsubscribe(self, event_types: Sequence[str], *, tenant_id: str | None = None) -> None:
        """Remove the bindings ``subscribe`` made for these event types (and tenant)."""
        keys = self._binding_keys(event_types, tenant_id)

        def unbind(channel: Any) -> None:
            for key in keys:
                channel.queue_unbind(queue=self.queue, exchange=self.exchange, routing_key=key)

        self._broker.run(unbind, doing=f"unbind queue {self.queue!r} from {keys}")

    def delete(self, *, dead_letters: bool = False) -> None:
        """Delete the queue and its messages; with ``dead_letters``, the DLQ too."""
        queues = [self.queue, self.dead_letter_queue] if dead_letters else [self.queue]

        def delete(channel: Any) -> None:
            for queue in queues:
                channel.queue_delete(queue=queue)

        self._broker.run(delete, doing=f"delete {queues}")
        # The next use opens a new connection, which declares the queue again.
        self._broker.reset()

    @staticmethod
    def _binding_keys(event_types: Sequence[str], tenant_id: str | None) -> list[str]:
        if isinstance(event_types, str):
            raise InvalidIdentifierError(f"event types must be a list, got {event_types!r}")
        types = validation.type_names(event_types)
        if not types:
            raise InvalidIdentifierError("no event types given")
        return [binding_key(t, tenant_id=tenant_id) for t in types]

    # -- consuming -----------------------------------------------------------------------

    def consume(
        self,
        handler: Handler,
        *,
        max_messages: int | None = None,
        idle_timeout: float | None = None,
    ) -> int:
        """Handle messages until ``max_messages`` are handled or none came for ``idle_timeout``.

        Returns how many the handler handled (duplicates and dead-lettered ones not counted).
        A handler exception propagates after its message was nacked for redelivery.
        """
        if max_messages is not None and max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        # In a context of its own: with tracing on, pika's instrumentation makes each message's
        # span the current one until the next message arrives, so the last one would otherwise
        # stay current in the caller's thread after the loop, adopting whatever it traces next.
        return contextvars.copy_context().run(self._consume, handler, max_messages, idle_timeout)

    def _consume(
        self, handler: Handler, max_messages: int | None, idle_timeout: float | None
    ) -> int:
        handled = 0
        failure: Exception | None = None
        channel = self._broker.run(self._prepare, doing=f"consume from {self.queue!r}")
        try:
            deliveries = channel.consume(self.queue, inactivity_timeout=idle_timeout)
            for method, properties, body in deliveries:
                if method is None:  # idle_timeout passed without a message
                    break
                outcome, failure = self._deliver(channel, handler, method, properties, body)
                if outcome is _Outcome.FAILED:
                    break
                if outcome is _Outcome.HANDLED:
                    handled += 1
                    if max_messages is not None and handled >= max_messages:
                        break
        except FAILURES as e:
            self._broker.reset()
            raise self._broker.error(e, f"consume from {self.queue!r}") from e
        finally:
            self._cancel(channel)
        if failure is not None:
            # Raised here, not inside the loop, so that it is never mistaken for a pika error.
            raise failure
        return handled

    def _prepare(self, channel: Any) -> Any:
        channel.basic_qos(prefetch_count=self._prefetch)
        return channel

    def _cancel(self, channel: Any) -> None:
        # Prefetched messages not yet handled go back to the queue, in order.
        if not self._broker.is_open:
            return
        try:
            channel.cancel()
        except FAILURES:
            self._broker.reset()  # closing the connection returns them as well

    def _deliver(
        self, channel: Any, handler: Handler, method: Any, properties: Any, body: bytes
    ) -> tuple[_Outcome, Exception | None]:
        """Handle one delivery and settle it (ack, nack or dead-letter)."""
        tag = method.delivery_tag
        try:
            event = decode(properties, body, routing_key=method.routing_key)
        except MessageFormatError as e:
            log.error(
                "malformed message dead-lettered",
                extra={"queue": self.dead_letter_queue, "reason": str(e)},
            )
            channel.basic_reject(tag, requeue=False)
            return _Outcome.DEAD_LETTERED, None
        try:
            outcome, failure = self._apply(event, handler)
            if failure is not None:
                outcome = self._record_failure(event, failure)
        except BaseException:
            channel.basic_nack(tag, requeue=True)
            raise
        if outcome is _Outcome.FAILED:
            channel.basic_nack(tag, requeue=True)
            return outcome, failure
        if outcome is _Outcome.DEAD_LETTERED:
            channel.basic_reject(tag, requeue=False)
        else:
            channel.basic_ack(tag)
        return outcome, None

    def _apply(self, event: ReceivedEvent, handler: Handler) -> tuple[_Outcome, Exception | None]:
        """The inbox row and the handler's writes, in one transaction."""
        key = (self.subscriber, event.event_id)
        failure: Exception | None = None
        with translated():
            conn = self._database()
            with conn.transaction():
                cur = conn.execute(_INSERT_INBOX, (*key, event.event_type, event.tenant_id))
                if cur.rowcount == 0:
                    return _Outcome.DUPLICATE, None
                try:
                    handler(event, conn)
                except Exception as e:
                    failure = e
                    raise psycopg.Rollback() from None  # undoes the inbox row and the writes
                conn.execute(_CLEAR_FAILURES, key)
        if failure is not None:
            return _Outcome.FAILED, failure
        return _Outcome.HANDLED, None

    def _record_failure(self, event: ReceivedEvent, failure: Exception) -> _Outcome:
        """Count a failed attempt: FAILED to retry it, DEAD_LETTERED at the last attempt."""
        error = f"{type(failure).__name__}: {failure}"[:_MAX_ERROR_CHARS]
        params = {
            "subscriber": self.subscriber,
            "message_id": event.event_id,
            "event_type": event.event_type,
            "tenant_id": event.tenant_id,
            "error": error,
            "max_attempts": self._max_attempts,
        }
        with translated(cause=failure):
            row = self._database().execute(_RECORD_FAILURE, params).fetchone()
        attempts, parked = row if row else (0, False)
        if not parked:
            return _Outcome.FAILED
        log.error(
            "handler failed %s times; message dead-lettered",
            attempts,
            extra={
                "queue": self.dead_letter_queue,
                "message_id": str(event.event_id),
                "error": error,
            },
        )
        return _Outcome.DEAD_LETTERED

    def _database(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed or self._db.broken:
            self._db = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            )
        return self._db

    def close(self) -> None:
        """Close the RabbitMQ and PostgreSQL connections."""
        self._broker.reset()
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> EventSubscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
