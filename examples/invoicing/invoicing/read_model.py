"""The ``open_invoices`` read model: its row type, DDL, projection and two queries, in one place.

A row per open invoice, with its customer, line count and total; a paid or void invoice's row is
deleted. ACCI applies the projection's changes exactly once, in the global order, with its
checkpoint, to the tables of the version the checkpoint names (``open_invoices_v1``…); the
queries read the stable name ``read_models.open_invoices`` (through ACCI's query bus and cache),
a view of the live version, which ``acci readmodels rebuild open_invoices`` can switch.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Final

import sqlmodel
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, Column, DateTime, Integer, Text

from acci import (
    Change,
    Delete,
    NotFoundError,
    Projection,
    ReadModel,
    RecordedEvent,
    TenantQuery,
    Update,
    Upsert,
)
from invoicing.domain import InvoiceIssued, InvoiceLineAdded

TABLE: Final = "open_invoices"


class OpenInvoiceRow(sqlmodel.SQLModel, table=True):
    """The table's shape (ACCI's tests hold every row type to the table its DDL creates)."""

    __tablename__ = TABLE
    __table_args__ = {"schema": "read_models"}

    tenant_id: str = sqlmodel.Field(primary_key=True, sa_type=Text)
    invoice_id: str = sqlmodel.Field(primary_key=True, sa_type=Text)
    customer: str = sqlmodel.Field(sa_type=Text)
    currency: str = sqlmodel.Field(sa_type=Text)
    line_count: int = sqlmodel.Field(default=0, sa_type=Integer)
    total_cents: int = sqlmodel.Field(default=0, sa_column=Column(BigInteger, nullable=False))
    issued_at: datetime = sqlmodel.Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_updated: datetime = sqlmodel.Field(
        sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    version: int = sqlmodel.Field(sa_column=Column(BigInteger, nullable=False))


# Each version's DDL; {open_invoices} is filled with the version's table name. Run once, when
# that version's tables are created.
DDL: Final = {
    1: """
CREATE TABLE {open_invoices} (
    tenant_id    text        NOT NULL,
    invoice_id   text        NOT NULL,
    customer     text        NOT NULL,
    currency     text        NOT NULL,
    line_count   integer     NOT NULL DEFAULT 0,
    total_cents  bigint      NOT NULL DEFAULT 0,
    issued_at    timestamptz NOT NULL,
    last_updated timestamptz NOT NULL,
    version      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, invoice_id)
)
""",
}


class OpenInvoicesProjection(Projection):
    """``read_models.open_invoices``: one row per open invoice."""

    name = "open_invoices"
    tables = frozenset({TABLE})

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        if event.aggregate_type != "Invoice":
            return []
        key = {"tenant_id": event.tenant_id, "invoice_id": event.aggregate_id}
        stream = {"last_updated": event.created_at, "version": event.sequence_number}
        if event.event_type in ("InvoicePaid", "InvoiceVoided"):
            return [Delete(TABLE, key)]
        match self.decode(event):
            case InvoiceIssued() as issued:
                values = {
                    "customer": issued.customer,
                    "currency": issued.currency,
                    "issued_at": event.created_at,
                    **stream,
                }
                return [Upsert(TABLE, key, values)]
            case InvoiceLineAdded() as line:
                added = line.quantity * line.unit_price_cents
                return [
                    Update(TABLE, key, stream, increments={"line_count": 1, "total_cents": added})
                ]
        return []


# --- queries -------------------------------------------------------------------------------------


class OpenInvoice(BaseModel):
    """An open invoice as the read model holds it."""

    tenant_id: str
    invoice_id: str
    customer: str
    currency: str
    line_count: int
    total_cents: int
    issued_at: datetime
    last_updated: datetime
    version: int


class OpenInvoices(BaseModel):
    """A tenant's open invoices (oldest first, at most ``limit``) and their sum."""

    invoices: list[OpenInvoice]
    total_cents: int


class GetOpenInvoice(TenantQuery[OpenInvoice]):
    """One open invoice of the tenant (``NotFoundError`` if it is not open, or not there)."""

    projections: ClassVar[tuple[str, ...]] = ("open_invoices",)
    result_type: ClassVar[type[BaseModel]] = OpenInvoice

    invoice_id: str = Field(min_length=1, max_length=100)


class ListOpenInvoices(TenantQuery[OpenInvoices]):
    """The tenant's open invoices."""

    projections: ClassVar[tuple[str, ...]] = ("open_invoices",)
    result_type: ClassVar[type[BaseModel]] = OpenInvoices

    limit: int = Field(default=100, ge=1, le=1_000)


# Names through sql.Identifier, values only as parameters.
_COLUMNS: Final = sql.SQL(", ").join(map(sql.Identifier, OpenInvoice.model_fields))
_TABLE: Final = sql.Identifier("read_models", TABLE)
_GET: Final = sql.SQL("SELECT {} FROM {} WHERE tenant_id = %s AND invoice_id = %s").format(
    _COLUMNS, _TABLE
)
_LIST: Final = sql.SQL(
    "SELECT {} FROM {} WHERE tenant_id = %s ORDER BY issued_at, invoice_id LIMIT %s"
).format(_COLUMNS, _TABLE)


class OpenInvoiceQueries:
    """The two queries' handlers, over the read models' pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def get_open(self, query: GetOpenInvoice) -> OpenInvoice:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_GET, (query.tenant_id, query.invoice_id))
            row = await cur.fetchone()
        if row is None:
            raise NotFoundError(
                f"no open invoice {query.invoice_id!r} in tenant {query.tenant_id!r}"
            )
        return OpenInvoice.model_validate(row)

    async def list_open(self, query: ListOpenInvoices) -> OpenInvoices:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_LIST, (query.tenant_id, query.limit))
            rows = await cur.fetchall()
        invoices = [OpenInvoice.model_validate(row) for row in rows]
        return OpenInvoices(invoices=invoices, total_cents=sum(i.total_cents for i in invoices))


READ_MODEL: Final = ReadModel(
    projection=OpenInvoicesProjection,
    rows=(OpenInvoiceRow,),
    ddl=DDL,
    queries={
        ListOpenInvoices: lambda pool: OpenInvoiceQueries(pool).list_open,
        GetOpenInvoice: lambda pool: OpenInvoiceQueries(pool).get_open,
    },
)
