"""The built-in application's domain: tenants and their users, and the rules between them.

Written with the same declarations as any plugged-in application: its aggregates, and one
``RelatedAggregate`` rule — a user's command needs its tenant active, and a registration or
deactivation takes or frees one of the tenant's seats (``domain/seats.py``) in the same
transaction. Importing ``acci.domain`` adds it to the catalogue.
"""

from __future__ import annotations

from typing import Final

from acci.domain.catalogue import add
from acci.domain.rules import RelatedAggregate
from acci.domain.seats import seat_events
from acci.domain.tenant import Tenant, ensure_tenant_active
from acci.domain.user import User

NAME: Final = "acci.tenancy"

AGGREGATES: Final = (Tenant, User)

RULES: Final = (
    RelatedAggregate(Tenant, applies_to=(User,), check=ensure_tenant_active, follow_up=seat_events),
)

add(NAME, AGGREGATES, RULES)
