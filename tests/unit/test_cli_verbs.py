"""The tenant and user verbs, generated from the domain catalogue and the queries: no services.

Sending and asking are replaced by recorders, so each test sees what a verb would send (a
command's tenant, type and payload) or ask (a query), as a user would type it.
"""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar, Literal, get_args

import pytest
import typer
from pydantic import BaseModel, Field
from typer.core import TyperArgument, TyperGroup, TyperOption

from acci.domain.command import Command
from acci.domain.tenancy import AGGREGATES
from acci.readmodels.queries import Page, Query
from acci.readmodels.tenancy.users import ListTenantUsers
from acci.workers import cli_commands, cli_queries
from acci.workers.cli import app
from acci.workers.cli_commands import command_group, verb_name
from acci.workers.cli_fields import field_parameters, model_data
from acci.workers.cli_queries import QUERY_VERBS
from acci.workers.cli_support import invoke

COMMON_COMMAND_OPTIONS = {"--command-id", "--json", "--no-wait", "--as", "--wait-for-read-model"}
COMMON_QUERY_OPTIONS = {"--json", "--consistent-with"}


def _group(name: str) -> TyperGroup:
    group = typer.main.get_command(app).commands[name]
    assert isinstance(group, TyperGroup)
    return group


def _options(command: Any) -> dict[str, TyperOption]:
    """The command's options by name, less --help."""
    return {p.opts[0]: p for p in command.params if isinstance(p, TyperOption) and p.name != "help"}


def _arguments(command: Any) -> list[str]:
    return [p.name for p in command.params if isinstance(p, TyperArgument)]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """What the command verbs send, instead of sending it."""
    calls: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []

    def record(tenant: str, command_type: str, payload: dict[str, Any], **options: Any) -> None:
        calls.append((tenant, command_type, payload, options))

    monkeypatch.setattr(cli_commands, "send", record)
    return calls


# --- commands ------------------------------------------------------------------------------------


def test_every_command_type_of_the_catalogue_is_a_verb_of_its_aggregates_group() -> None:
    for aggregate in AGGREGATES:
        group = _group(aggregate.aggregate_type.lower())
        for command in aggregate.command_types:
            assert verb_name(command, aggregate) in group.commands, command.command_type
    verbs = [
        (aggregate.aggregate_type, verb_name(command, aggregate))
        for aggregate in AGGREGATES
        for command in aggregate.command_types
    ]
    assert len(verbs) == len(set(verbs)) == sum(len(a.command_types) for a in AGGREGATES)


def test_verb_names_are_the_command_types_less_the_aggregates_name() -> None:
    names = {
        command.command_type: verb_name(command, aggregate)
        for aggregate in AGGREGATES
        for command in aggregate.command_types
    }
    assert names == {
        "CreateTenant": "create",
        "RenameTenant": "rename",
        "UpdateTenantSettings": "update-settings",
        "SuspendTenant": "suspend",
        "ReactivateTenant": "reactivate",
        "DeleteTenant": "delete",
        "RegisterUser": "register",
        "ChangeUserEmail": "change-email",
        "AssignRole": "assign-role",
        "RevokeRole": "revoke-role",
        "DeactivateUser": "deactivate",
    }


def test_every_command_field_is_an_option_or_argument_required_as_the_field_is() -> None:
    for aggregate in AGGREGATES:
        group = _group(aggregate.aggregate_type.lower())
        for command in aggregate.command_types:
            verb = group.commands[verb_name(command, aggregate)]
            by_field = {p.name: p for p in verb.params}
            for name, field in command.model_fields.items():
                parameter = by_field["tenant" if name == "tenant_id" else name]
                assert parameter.required == field.is_required(), (command.command_type, name)
                assert isinstance(parameter, TyperArgument) == (
                    name.endswith("_id") and name != "tenant_id"
                )
                assert parameter.help
            # Nothing but the fields, the tenant and the options every verb takes.
            others = {p.name for p in verb.params} - set(command.model_fields)
            assert others == {
                "tenant",
                "command_id",
                "as_json",
                "no_wait",
                "as_principal",
                "wait_for_read_model",
            }
            assert _options(verb)["--tenant"].required
            assert verb.help == command.__doc__


def test_the_verbs_keep_their_options_names_and_types() -> None:
    register = _group("user").commands["register"]
    assert _arguments(register) == ["user_id"]
    options = _options(register)
    assert [o for o in options if o not in COMMON_COMMAND_OPTIONS] == [
        "--tenant",
        "--email",
        "--name",
        "--role",
    ]
    assert options["--role"].multiple and not options["--role"].required
    assert options["--tenant"].opts == ["--tenant", "-t"]
    create = _options(_group("tenant").commands["create"])
    assert create["--name"].required and not create["--settings"].required
    assert create["--settings"].help == "JSON, e.g. '{\"max_users\": 50}'."
    assert _options(_group("tenant").commands["update-settings"])["--settings"].required
    assert not _options(_group("tenant").commands["delete"])["--reason"].required


@pytest.mark.parametrize(
    ("args", "tenant", "command_type", "payload"),
    [
        (
            ["tenant", "create", "-t", "t1", "--name", "Acme"],
            "t1",
            "CreateTenant",
            {"name": "Acme"},
        ),
        (
            ["tenant", "create", "-t", "t1", "--name", "A", "--settings", '{"max_users": 5}'],
            "t1",
            "CreateTenant",
            {"name": "A", "settings": {"max_users": 5}},
        ),
        (["tenant", "reactivate", "--tenant", "t1"], "t1", "ReactivateTenant", {}),
        (["tenant", "delete", "-t", "t1"], "t1", "DeleteTenant", {}),
        (
            ["tenant", "update-settings", "-t", "t1", "--settings", "{}"],
            "t1",
            "UpdateTenantSettings",
            {"settings": {}},
        ),
        (
            ["user", "register", "u1", "-t", "t1", "--email", "a@b.io", "--name", "Ann"],
            "t1",
            "RegisterUser",
            {"user_id": "u1", "email": "a@b.io", "display_name": "Ann"},
        ),
        (
            "user register u1 -t t1 --email e --name N --role admin --role member".split(),
            "t1",
            "RegisterUser",
            {"user_id": "u1", "email": "e", "display_name": "N", "roles": ["admin", "member"]},
        ),
        (
            ["user", "deactivate", "u1", "-t", "t1", "--reason", "left"],
            "t1",
            "DeactivateUser",
            {"user_id": "u1", "reason": "left"},
        ),
        (
            ["user", "revoke-role", "u1", "-t", "t1", "--role", "admin"],
            "t1",
            "RevokeRole",
            {"user_id": "u1", "role": "admin"},
        ),
    ],
)
def test_a_verb_sends_its_command_with_the_fields_given_and_no_others(
    sent: list[Any], args: list[str], tenant: str, command_type: str, payload: dict[str, Any]
) -> None:
    assert invoke(app, args) == 0
    [(sent_tenant, sent_type, sent_payload, options)] = sent
    assert (sent_tenant, sent_type, sent_payload) == (tenant, command_type, payload)
    assert options == {
        "command_id": None,
        "as_json": False,
        "no_wait": False,
        "wait_for_read_model": False,
        "as_principal": None,
    }


def test_settings_that_are_not_a_json_object_are_a_usage_error(
    sent: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(app, ["tenant", "create", "-t", "t", "--name", "N", "--settings", "[1]"]) == 2
    assert capsys.readouterr().err == (
        "error (usage): Invalid value: --settings must be a JSON object;"
        " see 'acci tenant create --help'\n"
    )
    assert sent == []


# A command the domain does not have: what a new one looks like on the command line.
class _Kind(BaseModel):
    colour: str


class PaintWidget(Command):
    """Paint a widget."""

    command_type: ClassVar[str] = "PaintWidget"

    widget_id: str
    coats: int = 2
    glossy: bool = False
    shade: Literal["light", "dark"] | None = None
    colours: frozenset[str] = Field(default=frozenset({"red"}))
    kind: _Kind | None = None

    @property
    def aggregate_id(self) -> str:
        return self.widget_id


class _Widget:
    aggregate_type: ClassVar[str] = "Widget"
    command_types: ClassVar[tuple[type[Command], ...]] = (PaintWidget,)


def test_a_new_command_type_becomes_a_verb_without_code(
    sent: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    widgets = typer.Typer()
    widgets.add_typer(command_group(_Widget), name="widget")

    assert invoke(widgets, ["widget", "paint", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "Paint a widget." in shown and "The widget id." in shown
    for option in ("--tenant", "--coats", "--glossy", "--shade", "--colours", "--kind"):
        assert option in shown
    # No read model shows a widget: nothing to wait for.
    assert "--wait-for-read-model" not in shown

    args = ["widget", "paint", "w1", "-t", "t1", "--coats", "3", "--glossy", "--shade", "dark"]
    assert invoke(widgets, [*args, "--colours", "a", "--kind", '{"colour": "blue"}']) == 0
    assert sent[-1][:3] == (
        "t1",
        "PaintWidget",
        {
            "widget_id": "w1",
            "coats": 3,
            "glossy": True,
            "shade": "dark",
            "colours": ["a"],
            "kind": {"colour": "blue"},
        },
    )
    assert invoke(widgets, ["widget", "paint", "w2", "-t", "t1"]) == 0
    assert sent[-1][2] == {"widget_id": "w2", "coats": 2, "glossy": False}
    assert sent[-1][3].keys() == {
        "command_id",
        "as_json",
        "no_wait",
        "wait_for_read_model",
        "as_principal",
    }


def test_a_field_with_no_command_line_form_is_refused_when_the_verb_is_made() -> None:
    class Odd(Command):
        command_type: ClassVar[str] = "Odd"
        pairs: dict[str, int] | list[int]

        @property
        def aggregate_id(self) -> str:
            return ""

    with pytest.raises(TypeError, match=r"Odd\.pairs: no command-line form"):
        field_parameters(Odd, names={}, help={})


def test_left_out_options_are_left_out_of_the_data() -> None:
    fields = field_parameters(PaintWidget, names={}, help={}, with_tenant=True)
    values = {f.parameter.name: None for f in fields} | {"tenant": "t", "widget_id": "w"}
    assert model_data(fields, values) == {"widget_id": "w", "tenant_id": "t"}


# --- queries -------------------------------------------------------------------------------------


def test_every_query_verb_takes_its_querys_fields() -> None:
    for verb in QUERY_VERBS:
        command = _group(verb.group).commands[verb.name]
        names = {p.name for p in command.params}
        for name, field in verb.query.model_fields.items():
            if name == "consistent_with":
                continue
            parameter = command.params[
                [p.name for p in command.params].index("tenant" if name == "tenant_id" else name)
            ]
            assert parameter.required == field.is_required(), (verb.name, name)
        assert COMMON_QUERY_OPTIONS <= set(_options(command)), verb.name
        assert "consistent_with" in names and command.help == verb.help


def test_query_help_names_every_choice_a_field_has() -> None:
    for verb in QUERY_VERBS:
        for name, field in verb.query.model_fields.items():
            choices = _literal_choices(field.annotation)
            if choices:
                text = verb.fields_help[name]
                assert all(choice in text for choice in choices), (verb.name, name, text)


def _literal_choices(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is Literal:
        return get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(c for a in get_args(annotation) for c in _literal_choices(a))
    return ()


def test_the_list_verbs_keep_their_options_and_defaults() -> None:
    options = _options(_group("tenant").commands["list"])
    assert list(options) == [
        "--status",
        "--sort",
        "--desc",
        "--limit",
        "--offset",
        "--cursor",
        "--json",
        "--consistent-with",
        "--as",
    ]
    assert (options["--sort"].default, options["--limit"].default) == ("name", 50)
    assert options["--desc"].is_flag and options["--desc"].default is False
    assert _arguments(_group("user").commands["get"]) == ["user_id"]


def test_a_query_verb_asks_its_query_and_prints_the_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[tuple[type[Query[Any]], dict[str, Any], str | None]] = []

    def ask(
        query_type: type[Query[Any]], data: dict[str, Any], as_principal: str | None
    ) -> tuple[Query[Any], BaseModel]:
        asked.append((query_type, data, as_principal))
        return query_type(**data), Page[Any](items=())

    monkeypatch.setattr(cli_queries, "ask", ask)
    args = ["user", "list", "-t", "t1", "--role", "admin", "--consistent-with", "3:4"]
    assert invoke(app, [*args, "--as", "ann@t1:admin"]) == 0
    [(query_type, data, as_principal)] = asked
    assert as_principal == "ann@t1:admin"
    assert query_type is ListTenantUsers
    query = ListTenantUsers(**data)
    assert (query.tenant_id, query.role, query.limit, query.offset) == ("t1", "admin", 50, 0)
    assert tuple(query.consistent_with or ()) == (3, 4)
    assert capsys.readouterr().out == "no users in tenant t1\n"
