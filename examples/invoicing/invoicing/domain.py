"""The Invoice aggregate: issue an invoice, add lines, pay it or void it.

Pure: ``decide`` turns a command and the state into events (or a ``DomainError`` naming the rule
it breaks), ``evolve`` folds an event into the state. Rules: an invoice is issued once; lines are
added only while it is open, and its total never passes ``MAX_TOTAL_CENTS``; it is paid in full,
once, and only with at least one line; a paid or void invoice never changes again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from acci import Command, DomainError, DomainEvent, EventSourced, UnknownEventTypeError

# What an invoice may total: ten trillion in the currency's units. Far past any real invoice, and
# far inside what every store of amounts (a PostgreSQL bigint, the read model's) can hold: a line
# that would pass it is refused, not stored to break the read models later.
MAX_TOTAL_CENTS = 10**15

# --- events --------------------------------------------------------------------------------------


class InvoiceIssued(DomainEvent):
    """An invoice was issued to a customer, open and empty."""

    event_type: ClassVar[str] = "InvoiceIssued"
    event_version: ClassVar[int] = 1

    customer: str
    currency: str


class InvoiceLineAdded(DomainEvent):
    """A line was added: a quantity at a unit price (version 1 stored one amount per line)."""

    event_type: ClassVar[str] = "InvoiceLineAdded"
    event_version: ClassVar[int] = 2

    description: str
    quantity: int
    unit_price_cents: int


def line_added_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had ``amount_cents`` for the whole line: one unit at that price."""
    amount = data.pop("amount_cents")
    return {**data, "quantity": 1, "unit_price_cents": amount}


class InvoicePaid(DomainEvent):
    """The invoice was paid in full."""

    event_type: ClassVar[str] = "InvoicePaid"
    event_version: ClassVar[int] = 1

    amount_cents: int


class InvoiceVoided(DomainEvent):
    """The invoice was cancelled."""

    event_type: ClassVar[str] = "InvoiceVoided"
    event_version: ClassVar[int] = 1

    reason: str


EVENTS = (InvoiceIssued, InvoiceLineAdded, InvoicePaid, InvoiceVoided)
UPCASTERS = {("InvoiceLineAdded", 1): line_added_v1_to_v2}

# --- commands ------------------------------------------------------------------------------------


class _InvoiceCommand(Command):
    # Who of a tenant may send these (ACCI's command policy, acci.domain.authorization): its
    # members too, not only its owners and admins (the default for an application's commands).
    allowed_roles: ClassVar[frozenset[str]] = frozenset({"owner", "admin", "member"})

    invoice_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")

    @property
    def aggregate_id(self) -> str:
        """The invoice id."""
        return self.invoice_id


class IssueInvoice(_InvoiceCommand):
    """Issue a new invoice to a customer."""

    command_type: ClassVar[str] = "IssueInvoice"

    customer: str = Field(min_length=1, max_length=200)
    currency: Literal["EUR", "USD", "GBP"] = "EUR"


class AddInvoiceLine(_InvoiceCommand):
    """Add a line to an open invoice."""

    command_type: ClassVar[str] = "AddInvoiceLine"

    description: str = Field(min_length=1, max_length=500)
    # Strict: a number, not a string of one or a boolean (JSON's true is no quantity).
    quantity: StrictInt = Field(default=1, ge=1, le=1_000_000)
    unit_price_cents: StrictInt = Field(ge=0, le=10**12)


class PayInvoice(_InvoiceCommand):
    """Record the payment of an open invoice, in full."""

    command_type: ClassVar[str] = "PayInvoice"

    amount_cents: StrictInt = Field(ge=0, le=MAX_TOTAL_CENTS)


class VoidInvoice(_InvoiceCommand):
    """Cancel an open invoice."""

    command_type: ClassVar[str] = "VoidInvoice"

    reason: str = Field(min_length=1, max_length=500)


InvoiceCommand = IssueInvoice | AddInvoiceLine | PayInvoice | VoidInvoice

# --- the aggregate -------------------------------------------------------------------------------


class InvoiceStatus(StrEnum):
    NONE = "none"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class InvoiceState(BaseModel):
    """What an invoice knows: its status, customer, currency, line count and total."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: InvoiceStatus = InvoiceStatus.NONE
    customer: str = ""
    currency: str = "EUR"
    lines: int = 0
    total_cents: int = 0


class Invoice(EventSourced[InvoiceState, InvoiceCommand]):
    """An invoice of one tenant; its aggregate id is its invoice id."""

    aggregate_type: ClassVar[str] = "Invoice"
    state_schema_version: ClassVar[int] = 1
    command_types: ClassVar[tuple[type[Command], ...]] = (
        IssueInvoice,
        AddInvoiceLine,
        PayInvoice,
        VoidInvoice,
    )

    @staticmethod
    def initial_state() -> InvoiceState:
        """An invoice not issued yet."""
        return InvoiceState()

    @staticmethod
    def decide(command: InvoiceCommand, state: InvoiceState) -> list[DomainEvent]:
        """The events ``command`` produces; ``DomainError`` when a rule forbids it."""
        invoice = command.invoice_id
        if isinstance(command, IssueInvoice):
            if state.status is not InvoiceStatus.NONE:
                raise DomainError(f"invoice {invoice!r} already exists", reason="already_exists")
            return [InvoiceIssued(customer=command.customer, currency=command.currency)]
        if state.status is InvoiceStatus.NONE:
            raise DomainError(f"invoice {invoice!r} does not exist", reason="not_found")
        if state.status is not InvoiceStatus.OPEN:
            raise DomainError(
                f"invoice {invoice!r} is {state.status}: it cannot change any more",
                reason=f"invoice_{state.status}",
            )
        match command:
            case AddInvoiceLine():
                total = state.total_cents + command.quantity * command.unit_price_cents
                if total > MAX_TOTAL_CENTS:
                    raise DomainError(
                        f"invoice {invoice!r} would total {total} cents with this line,"
                        f" more than an invoice may ({MAX_TOTAL_CENTS})",
                        reason="total_too_large",
                    )
                return [
                    InvoiceLineAdded(
                        description=command.description,
                        quantity=command.quantity,
                        unit_price_cents=command.unit_price_cents,
                    )
                ]
            case PayInvoice():
                if state.lines == 0:
                    raise DomainError(f"invoice {invoice!r} has no lines", reason="empty_invoice")
                if command.amount_cents != state.total_cents:
                    raise DomainError(
                        f"invoice {invoice!r} totals {state.total_cents} cents,"
                        f" not {command.amount_cents}",
                        reason="wrong_amount",
                    )
                return [InvoicePaid(amount_cents=command.amount_cents)]
            case VoidInvoice():
                return [InvoiceVoided(reason=command.reason)]
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    @staticmethod
    def evolve(state: InvoiceState, event: DomainEvent) -> InvoiceState:
        """The state after ``event``."""
        match event:
            case InvoiceIssued():
                return state.model_copy(
                    update={
                        "status": InvoiceStatus.OPEN,
                        "customer": event.customer,
                        "currency": event.currency,
                    }
                )
            case InvoiceLineAdded():
                added = event.quantity * event.unit_price_cents
                return state.model_copy(
                    update={"lines": state.lines + 1, "total_cents": state.total_cents + added}
                )
            case InvoicePaid():
                return state.model_copy(update={"status": InvoiceStatus.PAID})
            case InvoiceVoided():
                return state.model_copy(update={"status": InvoiceStatus.VOID})
        raise UnknownEventTypeError(
            event.event_type, event.event_version, detail="not an Invoice event"
        )
