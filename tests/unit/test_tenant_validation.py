"""Bad input to tenant commands is refused when the command is built, with a clear message."""

from __future__ import annotations

import unicodedata
from typing import Any

import pydantic
import pytest

from acci.domain import CommandValidationError, parse_command
from acci.domain.tenant import (
    CreateTenant,
    DeleteTenant,
    RenameTenant,
    SuspendTenant,
    TenantSettings,
)

SQL = "x'; DROP TABLE events;--"


def _rename(name: Any) -> RenameTenant:
    return RenameTenant.model_validate({"tenant_id": "acme", "name": name})


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "must not be empty"),
        ("   \t ", "must not be empty"),
        ("x" * 201, "201 characters; at most 200"),
        ("Ac\x00me", "control character '\\x00'"),
        ("Ac\nme", "control character '\\n'"),
        ("Ac\x1bme", "control character '\\x1b'"),
        ("Ac\x85me", "control character '\\x85'"),
        ("Acme\u2028Corp", "control character '\\u2028'"),
        ("Acme\u202eevil", "control character '\\u202e'"),
        ("Acme\ud800", "control character '\\ud800'"),
    ],
    ids=[
        "empty",
        "blank",
        "too-long",
        "nul",
        "newline",
        "escape",
        "c1-control",
        "line-separator",
        "bidi-override",
        "lone-surrogate",
    ],
)
def test_a_bad_tenant_name_is_refused_with_the_reason(name: str, expected: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="name") as info:
        _rename(name)
    assert expected in str(info.value)


@pytest.mark.parametrize("name", [None, 42, ["Acme"], b"Acme"], ids=repr)
def test_a_tenant_name_that_is_not_text_is_refused(name: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        _rename(name)


@pytest.mark.parametrize(
    "name",
    [SQL, "Robert'); DROP TABLE tenants;--", "<script>alert(1)</script>", "100% \\ _ %s {0}"],
    ids=["sql", "bobby-tables", "html", "format-strings"],
)
def test_names_that_look_like_code_are_kept_as_plain_text(name: str) -> None:
    # Safety comes from parameterised SQL and escaping on output, not from refusing quotes.
    assert _rename(name).name == name


@pytest.mark.parametrize(
    "name",
    [
        "Zürich Rück GmbH",
        "株式会社アクメ",
        "Ακμή",
        "شركة\u200cأكمي",
        "👨\u200d👩\u200d👧 Family Co",
    ],
    ids=["latin", "japanese", "greek", "arabic-zwnj", "emoji-zwj"],
)
def test_unicode_names_are_accepted(name: str) -> None:
    assert _rename(name).name == name


def test_names_are_stripped() -> None:
    assert _rename("  Acme Corp \n").name == "Acme Corp"


def test_names_are_normalised_to_nfc() -> None:
    assert _rename("Cafe\u0301").name == "Caf\u00e9"


def test_a_name_of_exactly_200_characters_is_accepted() -> None:
    assert len(_rename("x" * 200).name) == 200


def test_the_length_limit_applies_after_stripping() -> None:
    assert len(_rename("  " + "x" * 200 + "  ").name) == 200


# --- reasons --------------------------------------------------------------------------------


def test_a_suspension_needs_a_non_empty_reason() -> None:
    with pytest.raises(pydantic.ValidationError, match="reason must not be empty"):
        SuspendTenant(tenant_id="acme", reason="  ")


def test_a_reason_over_500_characters_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="501 characters; at most 500"):
        SuspendTenant(tenant_id="acme", reason="x" * 501)


def test_a_reason_may_span_lines() -> None:
    reason = "unpaid invoices:\n\t- March\n\t- April"
    assert SuspendTenant(tenant_id="acme", reason=reason).reason == reason


def test_a_reason_may_not_hold_other_control_characters() -> None:
    with pytest.raises(pydantic.ValidationError, match="control character"):
        DeleteTenant(tenant_id="acme", reason="bell\x07")


# --- tenant ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tenant_id",
    [
        "",
        SQL,
        "acme.eu",
        "-acme",
        "_acme",
        "acme corp",
        "a" * 65,
        "tenänt",
        "acme\n",
        "\uff41\uff43\uff4d\uff45",
    ],
    ids=[
        "empty",
        "sql",
        "dot",
        "leading-dash",
        "leading-underscore",
        "space",
        "too-long",
        "umlaut",
        "trailing-newline",
        "fullwidth",
    ],
)
def test_a_bad_tenant_id_is_refused(tenant_id: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="tenant id"):
        CreateTenant(tenant_id=tenant_id, name="Acme")


@pytest.mark.parametrize("tenant_id", ["a", "Acme-EU_2", "0day", "a" * 64])
def test_a_good_tenant_id_is_accepted(tenant_id: str) -> None:
    assert CreateTenant(tenant_id=tenant_id, name="Acme").tenant_id == tenant_id


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"max_users": 0}, "max_users"),
        ({"max_users": 100_001}, "max_users"),
        ({"max_users": "100"}, "max_users"),
        ({"max_users": True}, "max_users"),
        ({"max_users": 1.5}, "max_users"),
        ({"locale": "EN"}, "locale"),
        ({"locale": "en_US"}, "locale"),
        ({"locale": "en-us"}, "locale"),
        ({"locale": "english"}, "locale"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": "UTC; DROP TABLE events"}, "timezone"),
        ({"timezone": "A" * 65}, "timezone"),
        ({"features": {"Beta": True}}, "features"),
        ({"features": {"1beta": True}}, "features"),
        ({"features": {"beta-ui": True}}, "features"),
        ({"features": {"b" * 41: True}}, "features"),
        ({"features": {"beta": "yes"}}, "features"),
        ({"features": {"beta": 1}}, "features"),
        ({"features": {f"f{i}": True for i in range(33)}}, "features"),
        ({"colour": "blue"}, "colour"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else str(v),
)
def test_bad_tenant_settings_are_refused_naming_the_field(
    settings: dict[str, Any], field: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        TenantSettings.model_validate(settings)
    assert field in str(info.value)


def test_good_tenant_settings_are_accepted() -> None:
    settings = TenantSettings(
        max_users=100_000,
        locale="pt-BR",
        timezone="America/Argentina/Buenos_Aires",
        features={f"feature_{i}": i % 2 == 0 for i in range(32)},
    )
    assert len(settings.features) == 32
    assert TenantSettings(timezone="Etc/GMT+5").timezone == "Etc/GMT+5"


def test_default_tenant_settings_are_sensible() -> None:
    assert TenantSettings() == TenantSettings(
        max_users=100, locale="en", timezone="UTC", features={}
    )


def test_tenant_settings_are_immutable() -> None:
    settings = TenantSettings()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.max_users = 5  # type: ignore[misc]


# --- through parse_command, the way commands arrive -----------------------------------------


def test_every_problem_in_a_command_is_reported_in_one_validation_error() -> None:
    with pytest.raises(CommandValidationError) as info:
        parse_command(
            "CreateTenant",
            {"tenant_id": SQL, "name": "x" * 201, "settings": {"max_users": 0}},
        )
    message = str(info.value)
    assert message.startswith("invalid CreateTenant: ")
    assert 'tenant_id: tenant id "x\'; DROP TABLE events;--"' in message
    assert "name: name 'xxx" in message
    assert "201 characters; at most 200" in message
    assert "settings.max_users: Input should be greater than or equal to 1 (got 0)" in message
    assert info.value.code == "validation"


def test_every_ascii_character_in_a_name_is_judged_as_the_character_rules_say() -> None:
    # Printable ASCII skips the per-character scan (domain/text.py); every ASCII character
    # must still be refused exactly when its category is a control's.
    for code in range(128):
        char = chr(code)
        name = f"Ac{char}me"
        if unicodedata.category(char) == "Cc":
            with pytest.raises(pydantic.ValidationError, match="control character"):
                _rename(name)
        else:
            assert _rename(name).name == name
