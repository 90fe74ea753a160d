"""RabbitMQ: the wire format, publisher confirms and reconnects, subscriptions with an inbox."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from acci.activities.errors import application_error
from acci.eventstore.errors import InvalidIdentifierError, MessagingError
from acci.eventstore.messaging.messages import (
    PERSISTENT,
    MessageFormatError,
    ReceivedEvent,
    decode,
    encode,
)
from acci.eventstore.messaging.publisher import EventPublisher
from acci.eventstore.messaging.subscriber import EventSubscriber
from acci.eventstore.records import NewEvent, RecordedEvent
from acci.eventstore.store import EventStore
from tests.integration.events import counted, noted

AMQP_URL = os.environ.get("ACCI_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
WAIT = 10.0  # upper bound on any wait for the broker; tests normally finish far sooner
QUIET = 0.5  # how long "no further message" is watched for

Handler = Callable[[ReceivedEvent, psycopg.Connection[Any]], None]
SubscriberFactory = Callable[..., EventSubscriber]


def _connect() -> pika.BlockingConnection:
    try:
        return pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    except pika.exceptions.AMQPError as e:
        pytest.fail(
            f"RabbitMQ is not reachable at 127.0.0.1:5672: {e!r}\n"
            "Start it (see README, 'Services') - the tests never skip a missing service.",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def exchange() -> Iterator[str]:
    """An exchange of this module's own, so that other test runs' messages never arrive."""
    name = f"acci.events.test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    connection = _connect()
    channel = connection.channel()
    channel.exchange_delete(name)
    channel.exchange_delete(f"{name}.dlx")
    connection.close()


@pytest.fixture
def raw() -> Iterator[Any]:
    """A plain pika channel, to look at messages as they are on the wire."""
    connection = _connect()
    yield connection.channel()
    connection.close()


@pytest.fixture
def publisher(exchange: str) -> Iterator[EventPublisher]:
    with EventPublisher(AMQP_URL, exchange=exchange) as publisher:
        yield publisher


@pytest_asyncio.fixture(scope="module")
async def effects(pool: AsyncConnectionPool) -> str:
    """A table that handlers write to, to see what committed."""
    async with pool.connection() as conn:
        await conn.execute(
            "CREATE TABLE public.effects (subscriber text, message_id uuid, note text)"
        )
    return "public.effects"


@pytest.fixture
def new_subscriber(database_url: str, exchange: str, effects: str) -> Iterator[SubscriberFactory]:
    """Makes subscribers with unique names; their queues are deleted after the test."""
    made: list[EventSubscriber] = []

    def make(**options: Any) -> EventSubscriber:
        subscriber = EventSubscriber(
            AMQP_URL,
            database_url=database_url,
            subscriber=f"t-{uuid.uuid4().hex[:12]}",
            exchange=exchange,
            **options,
        )
        made.append(subscriber)
        return subscriber

    yield make
    for subscriber in made:
        subscriber.delete(dead_letters=True)
        subscriber.close()


def new_tenant() -> str:
    return f"tm-{uuid.uuid4().hex[:10]}"


async def stored(
    store: EventStore, tenant: str, *events: NewEvent, aggregate_type: str = "Note"
) -> list[RecordedEvent]:
    """Append events to a new stream and read them back as the store returns them."""
    stream = f"s-{uuid.uuid4().hex[:12]}"
    await store.append(tenant, stream, aggregate_type, events, command_id=uuid.uuid4())
    return await store.read_stream(tenant, stream)


def collecting(into: list[ReceivedEvent]) -> Handler:
    def handle(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        into.append(event)

    return handle


def recording_effect(subscriber: EventSubscriber, *, fail_first: int = 0) -> Handler:
    """A handler that writes a row, and raises after writing it on its first calls."""
    calls = 0

    def handle(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        nonlocal calls
        calls += 1
        conn.execute(
            "INSERT INTO public.effects (subscriber, message_id, note) VALUES (%s, %s, %s)",
            (subscriber.subscriber, event.event_id, f"call {calls}"),
        )
        if calls <= fail_first:
            raise RuntimeError(f"handler failed on call {calls}")

    return handle


async def rows(pool: AsyncConnectionPool, query: str, *params: object) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


def next_message(channel: Any, queue: str, *, timeout: float = WAIT) -> tuple[Any, Any, bytes]:
    """The next message on a queue, waiting for it to arrive (dead-lettering is asynchronous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, properties, body
        channel.connection.process_data_events(time_limit=0.05)
    pytest.fail(f"no message arrived on {queue} within {timeout}s")


def watch(channel: Any, exchange: str, key: str) -> str:
    """A private queue receiving what the exchange routes with ``key``."""
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, routing_key=key)
    return str(queue)


# -- the wire format ---------------------------------------------------------------------


async def test_every_field_survives_publish_and_consume(
    test_store: EventStore, publisher: EventPublisher, new_subscriber: SubscriberFactory
) -> None:
    tenant = new_tenant()
    [event] = await stored(test_store, tenant, noted("héllo ✓", correlation_id="corr-1"))
    subscriber = new_subscriber()
    subscriber.subscribe(["Noted"], tenant_id=tenant)

    publisher.publish_event(event, causation_id="cause-1")
    received: list[ReceivedEvent] = []
    assert subscriber.consume(collecting(received), max_messages=1, idle_timeout=WAIT) == 1

    [got] = received
    assert got == ReceivedEvent(
        event_id=event.event_id,
        tenant_id=tenant,
        aggregate_id=event.aggregate_id,
        aggregate_type="Note",
        sequence_number=1,
        event_type="Noted",
        event_version=1,
        data={"text": "héllo ✓"},
        # As stored (its causation implied by the command); the message's own cause, given at
        # publish time, is in its headers.
        metadata={"correlation_id": "corr-1", "causation_id": str(event.command_id)},
        command_id=event.command_id,
        created_at=event.created_at,
        position=event.position,
        routing_key=f"{tenant}.Note.Noted",
        correlation_id="corr-1",
        causation_id="cause-1",
    )


async def test_a_message_is_persistent_with_event_id_headers_and_json_body(
    test_store: EventStore, publisher: EventPublisher, exchange: str, raw: Any
) -> None:
    tenant = new_tenant()
    [event] = await stored(test_store, tenant, counted(7), aggregate_type="Counter")
    queue = watch(raw, exchange, f"{tenant}.#")

    publisher.publish_event(event)
    method, properties, body = next_message(raw, queue)

    assert method.routing_key == f"{tenant}.Counter.Counted"
    assert properties.message_id == str(event.event_id)
    assert properties.delivery_mode == PERSISTENT
    assert properties.content_type == "application/json"
    assert properties.type == "Counted"
    assert properties.correlation_id == str(event.command_id)  # implied by the command id
    assert properties.timestamp == int(event.created_at.timestamp())
    assert properties.headers == {
        "tenant_id": tenant,
        "aggregate_id": event.aggregate_id,
        "aggregate_type": "Counter",
        "event_type": "Counted",
        "event_version": 2,
        "sequence_number": 1,
        "global_position": event.global_position,
        "transaction_id": event.transaction_id,
        "command_id": str(event.command_id),
        "correlation_id": str(event.command_id),
        # A command's events are caused by it (the store implies it, it does not store it).
        "causation_id": str(event.command_id),
    }
    assert json.loads(body) == {
        "event_id": str(event.event_id),
        "tenant_id": tenant,
        "aggregate_id": event.aggregate_id,
        "aggregate_type": "Counter",
        "sequence_number": 1,
        "event_type": "Counted",
        "event_version": 2,
        "data": {"value": 7},
        "metadata": {
            "correlation_id": str(event.command_id),
            "causation_id": str(event.command_id),
        },
        "command_id": str(event.command_id),
        "created_at": event.created_at.isoformat(),
        "position": f"{event.transaction_id}:{event.global_position}",
    }
    decoded = decode(properties, body, routing_key=method.routing_key)
    assert decoded.causation_id == str(event.command_id)


# -- routing -----------------------------------------------------------------------------


async def test_bindings_by_event_type_and_by_tenant_route_only_matching_events(
    test_store: EventStore, publisher: EventPublisher, new_subscriber: SubscriberFactory
) -> None:
    tenant_a, tenant_b = new_tenant(), new_tenant()
    events = [
        *await stored(test_store, tenant_a, noted("a")),
        *await stored(test_store, tenant_b, noted("b")),
        *await stored(test_store, tenant_a, counted(1), aggregate_type="Counter"),
        *await stored(test_store, tenant_b, counted(2), aggregate_type="Counter"),
    ]
    every_tenants_notes = new_subscriber()
    every_tenants_notes.subscribe(["Noted"])
    counts_of_a = new_subscriber()
    counts_of_a.subscribe(["Counted"], tenant_id=tenant_a)

    publisher.publish_events(events)

    notes: list[ReceivedEvent] = []
    counts: list[ReceivedEvent] = []
    every_tenants_notes.consume(collecting(notes), max_messages=2, idle_timeout=WAIT)
    counts_of_a.consume(collecting(counts), max_messages=1, idle_timeout=WAIT)
    assert every_tenants_notes.consume(collecting(notes), idle_timeout=QUIET) == 0
    assert counts_of_a.consume(collecting(counts), idle_timeout=QUIET) == 0
    assert [(e.tenant_id, e.data) for e in notes] == [
        (tenant_a, {"text": "a"}),
        (tenant_b, {"text": "b"}),
    ]
    assert [(e.tenant_id, e.data) for e in counts] == [(tenant_a, {"value": 1})]


async def test_unsubscribe_stops_delivery_of_those_types_only(
    test_store: EventStore, publisher: EventPublisher, new_subscriber: SubscriberFactory
) -> None:
    tenant = new_tenant()
    note = await stored(test_store, tenant, noted())
    count = await stored(test_store, tenant, counted(3), aggregate_type="Counter")
    subscriber = new_subscriber()
    subscriber.subscribe(["Noted", "Counted"], tenant_id=tenant)
    subscriber.unsubscribe(["Noted"], tenant_id=tenant)

    publisher.publish_events([*note, *count])

    received: list[ReceivedEvent] = []
    assert subscriber.consume(collecting(received), idle_timeout=QUIET) == 1
    assert [e.event_type for e in received] == ["Counted"]


def test_bad_subscriber_names_event_types_and_tenants_are_refused(
    database_url: str, exchange: str
) -> None:
    with pytest.raises(InvalidIdentifierError, match="subscriber name"):
        EventSubscriber(AMQP_URL, database_url=database_url, subscriber="a.b", exchange=exchange)
    subscriber = EventSubscriber(
        AMQP_URL, database_url=database_url, subscriber="never-connects", exchange=exchange
    )
    with pytest.raises(InvalidIdentifierError, match="event type"):
        subscriber.subscribe(["Noted.#"])
    with pytest.raises(InvalidIdentifierError, match="tenant id"):
        subscriber.subscribe(["Noted"], tenant_id="*")
    with pytest.raises(InvalidIdentifierError, match="must be a list"):
        subscriber.subscribe("Noted")


# -- the inbox ---------------------------------------------------------------------------


async def test_the_same_event_published_twice_reaches_the_handler_once(
    test_store: EventStore,
    publisher: EventPublisher,
    new_subscriber: SubscriberFactory,
    pool: AsyncConnectionPool,
) -> None:
    tenant = new_tenant()
    [event] = await stored(test_store, tenant, noted())
    subscriber = new_subscriber()
    subscriber.subscribe(["Noted"], tenant_id=tenant)

    publisher.publish_event(event)
    publisher.publish_event(event)  # a retried publish activity

    received: list[ReceivedEvent] = []
    assert subscriber.consume(collecting(received), idle_timeout=QUIET) == 1
    assert [e.event_id for e in received] == [event.event_id]
    inbox = await rows(
        pool,
        "SELECT message_id, event_type, tenant_id FROM subscriptions.inbox WHERE subscriber = %s",
        subscriber.subscriber,
    )
    assert inbox == [(event.event_id, "Noted", tenant)]


async def test_a_handler_failure_rolls_back_its_writes_and_the_message_is_handled_once_later(
    test_store: EventStore,
    publisher: EventPublisher,
    new_subscriber: SubscriberFactory,
    pool: AsyncConnectionPool,
) -> None:
    tenant = new_tenant()
    [event] = await stored(test_store, tenant, noted())
    subscriber = new_subscriber()
    subscriber.subscribe(["Noted"], tenant_id=tenant)
    handler = recording_effect(subscriber, fail_first=1)
    publisher.publish_event(event)

    with pytest.raises(RuntimeError, match="handler failed on call 1"):
        subscriber.consume(handler, idle_timeout=WAIT)
    effects_query = "SELECT note FROM public.effects WHERE subscriber = %s"
    assert await rows(pool, effects_query, subscriber.subscriber) == []
    failures_query = (
        "SELECT attempts, last_error, parked_at FROM subscriptions.inbox_failures"
        " WHERE subscriber = %s AND message_id = %s"
    )
    assert await rows(pool, failures_query, subscriber.subscriber, event.event_id) == [
        (1, "RuntimeError: handler failed on call 1", None)
    ]

    assert subscriber.consume(handler, max_messages=1, idle_timeout=WAIT) == 1
    assert subscriber.consume(handler, idle_timeout=QUIET) == 0
    assert await rows(pool, effects_query, subscriber.subscriber) == [("call 2",)]
    assert await rows(pool, failures_query, subscriber.subscriber, event.event_id) == []


async def test_messages_behind_a_failed_one_are_kept_in_order_for_the_next_consume(
    test_store: EventStore,
    publisher: EventPublisher,
    new_subscriber: SubscriberFactory,
    pool: AsyncConnectionPool,
) -> None:
    tenant = new_tenant()
    events = await stored(test_store, tenant, noted("1"), noted("2"), noted("3"))
    subscriber = new_subscriber()
    subscriber.subscribe(["Noted"], tenant_id=tenant)
    publisher.publish_events(events)
    seen: list[str] = []

    def handler(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        seen.append(event.data["text"])
        if seen == ["1", "2"]:
            # Any exception is the handler's, even one that looks like a network error.
            raise ConnectionError("the handler's own downstream is down")
        conn.execute(
            "INSERT INTO public.effects (subscriber, message_id, note) VALUES (%s, %s, %s)",
            (subscriber.subscriber, event.event_id, event.data["text"]),
        )

    with pytest.raises(ConnectionError, match="downstream"):
        subscriber.consume(handler, idle_timeout=WAIT)
    assert subscriber.consume(handler, max_messages=2, idle_timeout=WAIT) == 2

    assert seen == ["1", "2", "2", "3"]
    notes = await rows(
        pool,
        "SELECT note FROM public.effects WHERE subscriber = %s ORDER BY note",
        subscriber.subscriber,
    )
    assert notes == [("1",), ("2",), ("3",)]


async def test_a_message_whose_handler_keeps_failing_is_parked_in_the_dead_letter_queue(
    test_store: EventStore,
    publisher: EventPublisher,
    new_subscriber: SubscriberFactory,
    pool: AsyncConnectionPool,
    raw: Any,
) -> None:
    tenant = new_tenant()
    [event] = await stored(test_store, tenant, noted())
    subscriber = new_subscriber(max_attempts=2)
    subscriber.subscribe(["Noted"], tenant_id=tenant)
    handler = recording_effect(subscriber, fail_first=99)
    publisher.publish_event(event)

    with pytest.raises(RuntimeError, match="call 1"):
        subscriber.consume(handler, idle_timeout=WAIT)
    # The last allowed attempt parks the message instead of raising, and consuming goes on.
    assert subscriber.consume(handler, idle_timeout=QUIET) == 0

    _, properties, _ = next_message(raw, subscriber.dead_letter_queue)
    assert properties.message_id == str(event.event_id)
    [(attempts, error, parked)] = await rows(
        pool,
        "SELECT attempts, last_error, parked_at IS NOT NULL FROM subscriptions.inbox_failures"
        " WHERE subscriber = %s",
        subscriber.subscriber,
    )
    assert (attempts, error, parked) == (2, "RuntimeError: handler failed on call 2", True)
    assert (
        await rows(
            pool, "SELECT 1 FROM public.effects WHERE subscriber = %s", subscriber.subscriber
        )
        == []
    )


def _not_json(properties: Any, body: dict[str, Any]) -> tuple[Any, bytes]:
    return properties, b"\xffnot json"


def _missing_field(properties: Any, body: dict[str, Any]) -> tuple[Any, bytes]:
    del body["data"]
    return properties, json.dumps(body).encode()


def _wrong_type(properties: Any, body: dict[str, Any]) -> tuple[Any, bytes]:
    body["sequence_number"] = "1"
    return properties, json.dumps(body).encode()


def _other_message_id(properties: Any, body: dict[str, Any]) -> tuple[Any, bytes]:
    properties.message_id = str(uuid.uuid4())
    return properties, json.dumps(body).encode()


@pytest.mark.parametrize("spoil", [_not_json, _missing_field, _wrong_type, _other_message_id])
async def test_a_malformed_message_goes_to_the_dead_letter_queue_and_skips_the_handler(
    spoil: Callable[[Any, dict[str, Any]], tuple[Any, bytes]],
    test_store: EventStore,
    new_subscriber: SubscriberFactory,
    exchange: str,
    raw: Any,
) -> None:
    tenant = new_tenant()
    [event] = await stored(test_store, tenant, noted())
    subscriber = new_subscriber()
    subscriber.subscribe(["Noted"], tenant_id=tenant)
    key, properties, body = encode(event, causation_id=None)
    properties, spoiled = spoil(properties, json.loads(body))
    with pytest.raises(MessageFormatError):
        decode(properties, spoiled)

    raw.basic_publish(exchange, key, spoiled, properties)

    received: list[ReceivedEvent] = []
    assert subscriber.consume(collecting(received), idle_timeout=QUIET) == 0
    assert received == []
    _, _, dead = next_message(raw, subscriber.dead_letter_queue)
    assert dead == spoiled


# -- the publisher's connection ----------------------------------------------------------


async def test_publishing_to_a_port_where_nothing_listens_fails_fast_without_the_password(
    test_store: EventStore,
) -> None:
    [event] = await stored(test_store, new_tenant(), noted())
    publisher = EventPublisher("amqp://acci:s3cret-pw@127.0.0.1:1/%2F", connect_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(MessagingError) as caught:
        publisher.publish_event(event)
    assert time.monotonic() - started < 3.0
    assert "127.0.0.1:1" in str(caught.value)
    reported = application_error(caught.value)  # as the command activity reports it: retried
    assert (reported.type, reported.non_retryable) == ("PersistenceError", False)
    error: BaseException | None = caught.value
    while error is not None:  # nowhere in the chain either
        assert "s3cret-pw" not in f"{error} {error!r}"
        error = error.__cause__ or error.__context__


async def test_the_publisher_reconnects_after_its_connection_is_closed_underneath_it(
    test_store: EventStore, publisher: EventPublisher, exchange: str, raw: Any
) -> None:
    tenant = new_tenant()
    first, second = await stored(test_store, tenant, noted("1"), noted("2"))
    queue = watch(raw, exchange, f"{tenant}.#")
    publisher.publish_event(first)

    publisher._broker._connection.close()
    publisher.publish_event(second)

    ids = [next_message(raw, queue)[1].message_id for _ in range(2)]
    assert ids == [str(first.event_id), str(second.event_id)]


async def test_the_publisher_retries_once_when_its_connection_died_silently(
    test_store: EventStore, publisher: EventPublisher, exchange: str, raw: Any
) -> None:
    tenant = new_tenant()
    first, second = await stored(test_store, tenant, noted("1"), noted("2"))
    queue = watch(raw, exchange, f"{tenant}.#")
    publisher.publish_event(first)

    # As when the broker dropped an idle connection: pika still believes it is open.
    publisher._broker._connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)
    publisher.publish_event(second)

    ids = [next_message(raw, queue)[1].message_id for _ in range(2)]
    assert ids == [str(first.event_id), str(second.event_id)]


async def test_closing_a_connection_the_broker_dropped_logs_no_error(
    test_store: EventStore, exchange: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker stopping after a quiet spell closes a connection the broker dropped: pika's
    # broken-socket lines are not errors of the worker's.
    [event] = await stored(test_store, new_tenant(), noted())
    publisher = EventPublisher(AMQP_URL, exchange=exchange)
    publisher.publish_event(event)
    publisher._broker._connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)
    with caplog.at_level(logging.DEBUG):
        publisher.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not publisher._broker.is_open
