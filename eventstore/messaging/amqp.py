"""One RabbitMQ connection that opens lazily, reopens after a failure and hides credentials."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar

import pika
import pika.exceptions

from acci.eventstore.errors import MessagingError

_T = TypeVar("_T")

# A broker under a resource alarm blocks publishers; give up on it rather than hang a worker.
_BLOCKED_TIMEOUT: Final = 30.0

# Everything pika raises for a broken connection, channel or unconfirmed message.
FAILURES: Final = (pika.exceptions.AMQPError, OSError)


class BrokerConnection:
    """One lazily opened RabbitMQ connection and channel, reopened after a failure."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float,
        on_open: Callable[[Any], None],
    ) -> None:
        try:
            params = pika.URLParameters(url)
        except Exception as e:  # pika's parse errors are ValueErrors and worse; never echo the URL
            raise ValueError(f"invalid RabbitMQ URL ({type(e).__name__})") from None
        params.connection_attempts = 1
        params.socket_timeout = connect_timeout
        params.stack_timeout = connect_timeout
        params.blocked_connection_timeout = _BLOCKED_TIMEOUT
        self._params = params
        self._password: str = params.credentials.password or ""
        self._on_open = on_open
        self._connection: Any = None
        self._channel: Any = None
        self.where = f"{params.host}:{params.port}"

    @property
    def is_open(self) -> bool:
        """True while the connection and channel are open (as far as pika knows)."""
        return bool(
            self._connection is not None
            and self._connection.is_open
            and self._channel is not None
            and self._channel.is_open
        )

    def channel(self) -> Any:
        """The open channel, opening the connection (and running ``on_open``) if needed."""
        if not self.is_open:
            self.reset()
            connection = pika.BlockingConnection(self._params)
            try:
                channel = connection.channel()
                self._on_open(channel)
            except BaseException:
                _close_quietly(connection)
                raise
            self._connection, self._channel = connection, channel
        return self._channel

    def run(self, action: Callable[[Any], _T], *, doing: str) -> _T:
        """``action(channel)``, run again once on a new connection if a reused one failed.

        An idle blocking connection misses heartbeats and the broker drops it without pika
        noticing, so the first use after a pause can fail: every action here is idempotent.
        """
        reused = self.is_open
        try:
            return action(self.channel())
        except FAILURES as e:
            self.reset()
            if not reused:
                raise self.error(e, doing) from e
        try:
            return action(self.channel())
        except FAILURES as e:
            self.reset()
            raise self.error(e, doing) from e

    def error(self, exc: BaseException, doing: str) -> MessagingError:
        """A MessagingError naming host:port and what failed, never the credentials."""
        detail = str(exc) or repr(exc)
        if self._password:
            detail = detail.replace(self._password, "***")
        return MessagingError(f"RabbitMQ at {self.where}: could not {doing}: {detail}")

    def reset(self) -> None:
        """Close the connection (quietly) so that the next use opens a new one."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            _close_quietly(connection)


def _close_quietly(connection: Any) -> None:
    """Close ``connection``; one the broker dropped already (an idle one that missed its
    heartbeats, say) is let go without pika logging its broken socket at error level: a
    worker's every shutdown after a quiet spell would log errors that are none."""
    pika_log = logging.getLogger("pika")
    level = pika_log.level
    pika_log.setLevel(logging.CRITICAL)
    try:
        if connection.is_open:
            connection.close()
    except FAILURES:
        pass  # already broken: there is nothing left to close
    finally:
        pika_log.setLevel(level)


def declare_exchange(channel: Any, exchange: str) -> None:
    """Declare the durable topic exchange events are published to (idempotent)."""
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
