"""A tenant's settings: bounded, so one tenant cannot store an unbounded blob."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

MAX_USERS_LIMIT: Final = 100_000
MAX_FEATURES: Final = 32

FeatureName = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z][a-z0-9_]{0,39}$")]
# A shape check, not a lookup: the tz database lives on disk and differs between hosts.
Timezone = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[A-Za-z][A-Za-z0-9_+/-]{0,63}$")
]
Locale = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]


class TenantSettings(BaseModel):
    """Per-tenant limits and preferences."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Strict: settings arrive as JSON, where "100" or true for a count is a mistake, not a value.
    max_users: StrictInt = Field(default=100, ge=1, le=MAX_USERS_LIMIT)
    locale: Locale = "en"
    timezone: Timezone = "UTC"
    # Mapping, not dict, so type-checked code cannot change a frozen model's flags in place.
    features: Mapping[FeatureName, StrictBool] = Field(
        default_factory=dict, max_length=MAX_FEATURES
    )
