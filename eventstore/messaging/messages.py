"""The RabbitMQ wire format of a stored event: exchange, routing key, properties and body."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

import pika

from acci.eventstore import validation
from acci.eventstore.errors import EventStoreValidationError, InvalidIdentifierError
from acci.eventstore.records import Position, RecordedEvent

EXCHANGE: Final = "acci.events"
CONTENT_TYPE: Final = "application/json"
PERSISTENT: Final = 2

_T = TypeVar("_T")


class MessageFormatError(EventStoreValidationError):
    """A message that is not an ACCI event message (bad JSON, fields, types or ids)."""


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event as a subscriber receives it, with its routing and correlation data."""

    event_id: uuid.UUID
    tenant_id: str
    aggregate_id: str
    aggregate_type: str
    sequence_number: int
    event_type: str
    event_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    command_id: uuid.UUID
    created_at: datetime
    position: Position
    routing_key: str
    correlation_id: str | None
    causation_id: str | None


def routing_key(event: RecordedEvent) -> str:
    """``<tenant>.<aggregate_type>.<event_type>``; each part is a dot-free identifier."""
    return ".".join(
        (
            validation.tenant_id(event.tenant_id),
            validation.type_name(event.aggregate_type, "aggregate type"),
            validation.type_name(event.event_type, "event type"),
        )
    )


def binding_key(event_type: str, *, tenant_id: str | None = None) -> str:
    """The topic pattern matching one event type, of one tenant or (None) of every tenant."""
    tenant = "*" if tenant_id is None else validation.tenant_id(tenant_id)
    return f"{tenant}.*.{validation.type_name(event_type, 'event type')}"


def correlation_id(event: RecordedEvent) -> str:
    """The event's correlation id: its metadata's, else its command id."""
    value = event.metadata.get("correlation_id")
    return value if isinstance(value, str) and value else str(event.command_id)


def encode(
    event: RecordedEvent, *, causation_id: str | None
) -> tuple[str, pika.BasicProperties, bytes]:
    """The routing key, properties and JSON body that carry ``event``."""
    correlation = correlation_id(event)
    headers: dict[str, str | int] = {
        "tenant_id": event.tenant_id,
        "aggregate_id": event.aggregate_id,
        "aggregate_type": event.aggregate_type,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "sequence_number": event.sequence_number,
        "global_position": event.global_position,
        "transaction_id": event.transaction_id,
        "command_id": str(event.command_id),
        "correlation_id": correlation,
    }
    if causation_id is not None:
        headers["causation_id"] = causation_id
    properties = pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=str(event.event_id),
        correlation_id=correlation,
        timestamp=int(event.created_at.timestamp()),
        type=event.event_type,
        headers=headers,
    )
    body = {
        "event_id": str(event.event_id),
        "tenant_id": event.tenant_id,
        "aggregate_id": event.aggregate_id,
        "aggregate_type": event.aggregate_type,
        "sequence_number": event.sequence_number,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "data": event.data,
        "metadata": event.metadata,
        "command_id": str(event.command_id),
        "created_at": event.created_at.isoformat(),
        "position": str(event.position),
    }
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return routing_key(event), properties, text.encode()


def decode(
    properties: pika.BasicProperties, body: bytes, *, routing_key: str | None = None
) -> ReceivedEvent:
    """The event a message carries, or MessageFormatError; ``routing_key`` as delivered."""
    if properties.content_type not in (None, CONTENT_TYPE):
        raise MessageFormatError(f"content type {properties.content_type!r} is not {CONTENT_TYPE}")
    try:
        fields = json.loads(body)
    except ValueError as e:  # UnicodeDecodeError included
        raise MessageFormatError(f"message body is not JSON: {e}") from None
    if not isinstance(fields, dict):
        raise MessageFormatError(f"message body is a JSON {type(fields).__name__}, not an object")
    try:
        event = _event(fields, properties, routing_key)
    except InvalidIdentifierError as e:
        raise MessageFormatError(f"message body has {e}") from None
    if properties.message_id != str(event.event_id):
        raise MessageFormatError(
            f"message id {properties.message_id!r} is not the body's event id {event.event_id}"
        )
    return event


def _event(
    fields: Mapping[str, Any], properties: pika.BasicProperties, delivered_key: str | None
) -> ReceivedEvent:
    tenant = validation.tenant_id(_field(fields, "tenant_id", str))
    aggregate_type = validation.type_name(_field(fields, "aggregate_type", str), "aggregate type")
    event_type = validation.type_name(_field(fields, "event_type", str), "event type")
    causation = (properties.headers or {}).get("causation_id")
    return ReceivedEvent(
        event_id=_uuid(fields, "event_id"),
        tenant_id=tenant,
        aggregate_id=validation.aggregate_id(_field(fields, "aggregate_id", str)),
        aggregate_type=aggregate_type,
        sequence_number=_field(fields, "sequence_number", int),
        event_type=event_type,
        event_version=_field(fields, "event_version", int),
        data=_field(fields, "data", dict),
        metadata=_field(fields, "metadata", dict),
        command_id=_uuid(fields, "command_id"),
        created_at=_datetime(_field(fields, "created_at", str)),
        position=_position(_field(fields, "position", str)),
        routing_key=(
            f"{tenant}.{aggregate_type}.{event_type}" if delivered_key is None else delivered_key
        ),
        correlation_id=properties.correlation_id,
        causation_id=causation if isinstance(causation, str) else None,
    )


def _field(fields: Mapping[str, Any], name: str, kind: type[_T]) -> _T:
    value = fields.get(name)
    # bool is an int to Python, never to us.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        shown = "missing" if name not in fields else f"a {type(value).__name__}"
        raise MessageFormatError(f"message field {name!r} is {shown}, not a {kind.__name__}")
    return value


def _uuid(fields: Mapping[str, Any], name: str) -> uuid.UUID:
    text = _field(fields, name, str)
    try:
        return uuid.UUID(text)
    except ValueError:
        raise MessageFormatError(f"message field {name!r} is not a UUID: {text!r}") from None


def _datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise MessageFormatError(f"message field 'created_at' is not a time: {text!r}") from None
    if value.tzinfo is None:
        raise MessageFormatError(f"message field 'created_at' has no time zone: {text!r}")
    return value


def _position(text: str) -> Position:
    try:
        return Position.parse(text)
    except ValueError as e:
        raise MessageFormatError(f"message field 'position': {e}") from None
