"""Bad input to user commands (emails, roles, ids, names) is refused when the command is built."""

from __future__ import annotations

import pydantic
import pytest

from acci.domain import CommandValidationError, parse_command
from acci.domain.roles import ROLES
from acci.domain.user import AssignRole, ChangeUserEmail, DeactivateUser, RegisterUser, RevokeRole

SQL = "x'; DROP TABLE events;--"


def _email(email: str) -> str:
    return ChangeUserEmail(user_id="user-1", email=email).email


# --- emails ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "",
        "plain",
        "@example.com",
        "bob@",
        "bob@example",
        "bob@example.c",
        "bob smith@example.com",
        f"{SQL}@example.com",
        "bob@example.com'; DROP TABLE users;--",
        "bob..smith@example.com",
        ".bob@example.com",
        "bob.@example.com",
        "bob@-example.com",
        "bob@example-.com",
        "bob@example..com",
        "bob@@example.com",
        "bob@exam_ple.com",
        "bob@123.456",
        "jörg@example.com",
        "bob@exämple.com",
        "bob\n@example.com",
        "bob@example.com\x00",
        "x" * 65 + "@example.com",
        "bob@" + "a" * 64 + ".com",
        "bob@" + ".".join(c * 63 for c in "abcd") + ".com",
    ],
    ids=[
        "empty",
        "no-at",
        "no-local",
        "no-domain",
        "no-tld",
        "one-letter-tld",
        "space",
        "sql-local",
        "sql-domain",
        "double-dot",
        "leading-dot",
        "trailing-dot",
        "label-leading-dash",
        "label-trailing-dash",
        "empty-label",
        "two-ats",
        "underscore-domain",
        "numeric-tld",
        "unicode-local",
        "unicode-domain",
        "newline",
        "nul",
        "local-over-64",
        "label-over-63",
        "over-254",
    ],
)
def test_a_bad_email_is_refused(email: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="email"):
        _email(email)


@pytest.mark.parametrize(
    "email",
    [
        "bob@example.com",
        "o'brien@example.com",
        "first.last+tag@mail.example.co.uk",
        "x@a-b.io",
        "user_name-1@sub-domain.example.museum",
        "!#$%&*+/=?^`{|}~@example.org",
    ],
)
def test_a_good_email_is_accepted_as_given(email: str) -> None:
    assert _email(email) == email


def test_an_email_of_exactly_254_characters_is_accepted() -> None:
    domain = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + ".com"
    email = "x" * (254 - len(domain) - 1) + "@" + domain
    assert len(email) == 254
    assert _email(email) == email


def test_an_email_domain_is_lowercased_but_the_local_part_is_kept() -> None:
    assert _email("Bob.Smith@Mail.EXAMPLE.Com") == "Bob.Smith@mail.example.com"


def test_an_email_is_stripped() -> None:
    assert _email("  bob@example.com \n") == "bob@example.com"


# --- roles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_known_role_can_be_assigned(role: str) -> None:
    assert AssignRole(user_id="user-1", role=role).role == role


@pytest.mark.parametrize("role", ["god", "", "Admin", "admin ", SQL, "ädmin"], ids=repr)
@pytest.mark.parametrize("command", [AssignRole, RevokeRole])
def test_an_unknown_role_is_refused_listing_the_known_ones(
    command: type[AssignRole | RevokeRole], role: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match="known roles: admin, member, owner, viewer"):
        command(user_id="user-1", role=role)


def test_registering_with_an_unknown_role_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown role 'god'"):
        RegisterUser.model_validate(
            {"user_id": "u1", "email": "a@example.com", "display_name": "A", "roles": ["god"]}
        )


def test_registering_with_no_roles_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="roles"):
        RegisterUser(user_id="u1", email="a@example.com", display_name="A", roles=frozenset())


def test_registering_with_a_repeated_role_keeps_it_once() -> None:
    command = RegisterUser.model_validate(
        {
            "user_id": "u1",
            "email": "a@example.com",
            "display_name": "A",
            "roles": ["admin", "admin"],
        }
    )
    assert command.roles == frozenset({"admin"})


def test_registering_without_roles_defaults_to_member() -> None:
    command = RegisterUser(user_id="u1", email="a@example.com", display_name="A")
    assert command.roles == frozenset({"member"})


# --- display names, reasons and user ids ----------------------------------------------------


@pytest.mark.parametrize(
    "display_name", ["", " ", "x" * 201, "Bob\x00", "Bob\r\nAdmin: yes"], ids=repr
)
def test_a_bad_display_name_is_refused(display_name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="display_name"):
        RegisterUser(user_id="u1", email="a@example.com", display_name=display_name)


def test_a_sql_looking_display_name_is_kept_as_plain_text() -> None:
    command = RegisterUser(user_id="u1", email="a@example.com", display_name=SQL)
    assert command.display_name == SQL


def test_a_deactivation_reason_over_500_characters_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="reason"):
        DeactivateUser(user_id="u1", reason="x" * 501)


@pytest.mark.parametrize(
    "user_id",
    ["", SQL, ".bob", "bob smith", "bob/1", "a" * 129, "bób", "bob\n"],
    ids=repr,
)
def test_a_bad_user_id_is_refused(user_id: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="aggregate id"):
        DeactivateUser(user_id=user_id)


@pytest.mark.parametrize(
    "user_id", ["u1", "bob@example.com", "user:42", "a.b-c_d", "A" * 128], ids=repr
)
def test_a_good_user_id_is_accepted(user_id: str) -> None:
    assert DeactivateUser(user_id=user_id).user_id == user_id


# --- through parse_command, the way commands arrive -----------------------------------------


def test_a_register_command_with_many_problems_reports_them_all() -> None:
    with pytest.raises(CommandValidationError) as info:
        parse_command(
            "RegisterUser",
            {"user_id": "u1", "email": "nope", "display_name": "", "roles": ["god"], "x": 1},
        )
    message = str(info.value)
    assert message.startswith("invalid RegisterUser: ")
    for expected in [
        "email: email 'nope' is not a valid address",
        "display_name: name must not be empty",
        "roles.0: unknown role 'god'",
        "x: Extra inputs are not permitted (got 1)",
    ]:
        assert expected in message
