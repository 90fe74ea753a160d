"""Invoicing, an ACCI application: the whole declaration ACCI installs (``app``)."""

from __future__ import annotations

from acci import Application, requires_active_tenant
from invoicing.domain import EVENTS, UPCASTERS, Invoice
from invoicing.read_model import READ_MODEL

app = Application(
    name="invoicing",
    aggregates=[Invoice],
    # Invoices are written only in an existing, active tenant (the built-in tenancy rule).
    rules=[requires_active_tenant(Invoice)],
    events=EVENTS,
    upcasters=UPCASTERS,
    read_models=[READ_MODEL],
)

__all__ = ["app"]
