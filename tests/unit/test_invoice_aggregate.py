"""The example application's Invoice aggregate (examples/invoicing), given/when/then.

The application is not installed in this process (unit tests share it, and other modules check
the built-in catalogue exactly): each scenario names the aggregate, and events go through a
registry of the application's own events and upcasters, as ACCI's is once it is installed.
"""

from __future__ import annotations

import pytest
from invoicing import app
from invoicing.domain import (
    MAX_TOTAL_CENTS,
    AddInvoiceLine,
    Invoice,
    InvoiceIssued,
    InvoiceLineAdded,
    InvoicePaid,
    InvoiceStatus,
    InvoiceVoided,
    IssueInvoice,
    PayInvoice,
    VoidInvoice,
)
from pydantic import ValidationError

from acci import Application, Command, DomainError, DomainEvent, EventRegistry
from tests.unit.given_when_then import Given
from tests.unit.given_when_then import given as given_any


def registry_of(application: Application) -> EventRegistry:
    """A registry of ``application``'s events and upcasters (what installing it adds)."""
    registry = EventRegistry()
    for event in application.events:
        registry.register(event)
    for (event_type, version), upcaster in sorted(application.upcasters.items()):
        registry.register_upcaster(event_type, version)(upcaster)
    return registry


INVOICING = registry_of(app)


def given(events: list[DomainEvent]) -> Given:
    """An invoice's stored history."""
    return given_any(events, aggregate=Invoice, registry=INVOICING)


INV = "inv-1"
ISSUED = InvoiceIssued(customer="Globex", currency="EUR")
LINE = InvoiceLineAdded(description="Consulting", quantity=3, unit_price_cents=500)
PAID = InvoicePaid(amount_cents=1500)
VOIDED = InvoiceVoided(reason="sent twice")

EVERY_CHANGE: list[Command] = [
    AddInvoiceLine(invoice_id=INV, description="More", unit_price_cents=100),
    PayInvoice(invoice_id=INV, amount_cents=1500),
    VoidInvoice(invoice_id=INV, reason="late"),
]


def _type(command: Command) -> str:
    return command.command_type


# --- issuing -------------------------------------------------------------------------------------


def test_issuing_an_invoice_records_its_customer_and_currency() -> None:
    invoice = (
        given([])
        .when(IssueInvoice(invoice_id=INV, customer="Globex", currency="EUR"))
        .then([ISSUED])
    )
    assert invoice.state.status is InvoiceStatus.OPEN
    assert (invoice.state.lines, invoice.state.total_cents) == (0, 0)


def test_an_invoice_cannot_be_issued_twice() -> None:
    error = (
        given([ISSUED])
        .when(IssueInvoice(invoice_id=INV, customer="Initech"))
        .then_raises(DomainError, reason="already_exists")
    )
    assert str(error) == "invoice 'inv-1' already exists"


@pytest.mark.parametrize("command", EVERY_CHANGE, ids=_type)
def test_an_invoice_not_issued_cannot_change(command: Command) -> None:
    error = given([]).when(command).then_raises(DomainError, reason="not_found")
    assert str(error) == "invoice 'inv-1' does not exist"


# --- lines and the total -------------------------------------------------------------------------


def test_a_line_adds_its_quantity_times_its_unit_price_to_the_total() -> None:
    invoice = (
        given([ISSUED, LINE])
        .when(AddInvoiceLine(invoice_id=INV, description="Travel", unit_price_cents=250))
        .then([InvoiceLineAdded(description="Travel", quantity=1, unit_price_cents=250)])
    )
    assert (invoice.state.lines, invoice.state.total_cents) == (2, 1750)


def test_a_line_that_would_take_the_total_past_the_maximum_is_refused() -> None:
    def big(quantity: int) -> InvoiceLineAdded:
        return InvoiceLineAdded(description="Big", quantity=quantity, unit_price_cents=10**12)

    # Up to the maximum exactly, a line is added.
    given([ISSUED, big(999)]).when(
        AddInvoiceLine(invoice_id=INV, description="Big", unit_price_cents=10**12)
    ).then([big(1)])
    error = (
        given([ISSUED, big(1_000)])
        .when(AddInvoiceLine(invoice_id=INV, description="One more", unit_price_cents=1))
        .then_raises(DomainError, reason="total_too_large")
    )
    assert str(error) == (
        f"invoice 'inv-1' would total {MAX_TOTAL_CENTS + 1} cents with this line,"
        f" more than an invoice may ({MAX_TOTAL_CENTS})"
    )


@pytest.mark.parametrize("value", [True, "10", 1.5])
def test_amounts_and_quantities_are_numbers_not_strings_or_booleans(value: object) -> None:
    for field in ("quantity", "unit_price_cents"):
        data = {"invoice_id": INV, "description": "X", "unit_price_cents": 1, field: value}
        with pytest.raises(ValidationError, match=field):
            AddInvoiceLine.model_validate(data)
    with pytest.raises(ValidationError, match="amount_cents"):
        PayInvoice.model_validate({"invoice_id": INV, "amount_cents": value})


# --- paying --------------------------------------------------------------------------------------


def test_paying_the_total_pays_the_invoice() -> None:
    invoice = given([ISSUED, LINE]).when(PayInvoice(invoice_id=INV, amount_cents=1500)).then([PAID])
    assert invoice.state.status is InvoiceStatus.PAID


def test_an_invoice_without_lines_cannot_be_paid() -> None:
    error = (
        given([ISSUED])
        .when(PayInvoice(invoice_id=INV, amount_cents=0))
        .then_raises(DomainError, reason="empty_invoice")
    )
    assert str(error) == "invoice 'inv-1' has no lines"


@pytest.mark.parametrize("amount", [1499, 1501, 0])
def test_an_invoice_is_paid_with_its_total_only(amount: int) -> None:
    error = (
        given([ISSUED, LINE])
        .when(PayInvoice(invoice_id=INV, amount_cents=amount))
        .then_raises(DomainError, reason="wrong_amount")
    )
    assert str(error) == f"invoice 'inv-1' totals 1500 cents, not {amount}"


# --- a paid or void invoice never changes --------------------------------------------------------


@pytest.mark.parametrize("command", EVERY_CHANGE, ids=_type)
def test_a_paid_invoice_cannot_change(command: Command) -> None:
    error = (
        given([ISSUED, LINE, PAID]).when(command).then_raises(DomainError, reason="invoice_paid")
    )
    assert str(error) == "invoice 'inv-1' is paid: it cannot change any more"


@pytest.mark.parametrize("command", EVERY_CHANGE, ids=_type)
def test_a_void_invoice_cannot_change(command: Command) -> None:
    error = given([ISSUED, VOIDED]).when(command).then_raises(DomainError, reason="invoice_void")
    assert str(error) == "invoice 'inv-1' is void: it cannot change any more"


def test_a_paid_invoice_cannot_be_issued_again() -> None:
    given([ISSUED, LINE, PAID]).when(IssueInvoice(invoice_id=INV, customer="Globex")).then_raises(
        DomainError, reason="already_exists"
    )


def test_an_open_invoice_can_be_voided() -> None:
    invoice = (
        given([ISSUED, LINE]).when(VoidInvoice(invoice_id=INV, reason="sent twice")).then([VOIDED])
    )
    assert invoice.state.status is InvoiceStatus.VOID


# --- InvoiceLineAdded version 1 ------------------------------------------------------------------


def test_the_upcaster_reads_a_version_1_line_as_one_unit_at_its_amount() -> None:
    stored = {"description": "Setup", "amount_cents": 1250}
    line = INVOICING.decode("InvoiceLineAdded", 1, stored)
    assert line == InvoiceLineAdded(description="Setup", quantity=1, unit_price_cents=1250)
    assert stored == {"description": "Setup", "amount_cents": 1250}  # the stored data is kept


def test_an_invoice_with_a_version_1_line_totals_it() -> None:
    old_line = INVOICING.decode(
        "InvoiceLineAdded", 1, {"description": "Setup", "amount_cents": 1250}
    )
    invoice = (
        given([ISSUED, old_line, LINE])
        .when(PayInvoice(invoice_id=INV, amount_cents=2750))
        .then([InvoicePaid(amount_cents=2750)])
    )
    assert invoice.state.lines == 2


def test_the_application_declares_the_upcaster_from_version_1() -> None:
    assert INVOICING.current_version("InvoiceLineAdded") == 2
    assert INVOICING.has_upcaster("InvoiceLineAdded", 1)
