"""Invoicing, an ACCI application: the whole declaration ACCI installs (``app``)."""

from __future__ import annotations

from acci import Application, requires_active_tenant
from invoicing.domain import EVENTS, UPCASTERS, Invoice
from invoicing.read_model import (
    OPEN_INVOICES_DDL,
    GetOpenInvoice,
    ListOpenInvoices,
    OpenInvoiceQueries,
    OpenInvoicesProjection,
)

app = Application(
    name="invoicing",
    aggregates=[Invoice],
    # Invoices are written only in an existing, active tenant (the built-in tenancy rule).
    rules=[requires_active_tenant(Invoice)],
    events=EVENTS,
    upcasters=UPCASTERS,
    projections=[OpenInvoicesProjection],
    read_models={"open_invoices": OPEN_INVOICES_DDL},
    queries={
        ListOpenInvoices: lambda pool: OpenInvoiceQueries(pool).list_open,
        GetOpenInvoice: lambda pool: OpenInvoiceQueries(pool).get_open,
    },
)

__all__ = ["app"]
