"""The read-model tables as typed rows (the DDL is migration 004_read_models.sql).

Each class states its table's columns, SQL types, nullability and primary key;
``tests/integration/test_read_model_shapes.py`` checks them against the table the migrations
create, so the two cannot drift apart. Rows can be validated into them, e.g.
``TenantReadModel.model_validate(dict(row))`` on a ``dict_row`` cursor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

SCHEMA = "read_models"


def _timestamp() -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def _version() -> Any:
    return Field(sa_column=Column(BigInteger, nullable=False))


class TenantReadModel(SQLModel, table=True):
    """A tenant: name, status, settings and how many active users it has."""

    __tablename__ = "tenants"
    __table_args__ = {"schema": SCHEMA}

    tenant_id: str = Field(primary_key=True, sa_type=Text)
    name: str = Field(sa_type=Text)
    # 'active' | 'suspended' | 'deleted'
    status: str = Field(sa_type=Text)
    # Users registered and not deactivated.
    user_count: int = Field(default=0, sa_type=Integer)
    settings: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _timestamp()
    # created_at of the last event applied to the row.
    last_updated: datetime = _timestamp()
    # The tenant stream's version.
    version: int = _version()


class UserReadModel(SQLModel, table=True):
    """A user of a tenant: email, display name, sorted roles and status."""

    __tablename__ = "users"
    __table_args__ = {"schema": SCHEMA}

    tenant_id: str = Field(primary_key=True, sa_type=Text)
    user_id: str = Field(primary_key=True, sa_type=Text)
    email: str = Field(sa_type=Text)
    display_name: str = Field(sa_type=Text)
    roles: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    # 'active' | 'deactivated'
    status: str = Field(sa_type=Text)
    created_at: datetime = _timestamp()
    last_updated: datetime = _timestamp()
    # The user stream's version.
    version: int = _version()


class TenantActivity(SQLModel, table=True):
    """How many events of one type a tenant's aggregates have had, and when the last one was."""

    __tablename__ = "tenant_activity"
    __table_args__ = {"schema": SCHEMA}

    tenant_id: str = Field(primary_key=True, sa_type=Text)
    event_type: str = Field(primary_key=True, sa_type=Text)
    event_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    last_event_at: datetime = _timestamp()
