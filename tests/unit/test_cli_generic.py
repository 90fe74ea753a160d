"""`acci command` and `acci query` before anything is sent: the lists of every installed type,
built-in and plugged in (the example invoicing application, installed with the project), and
the refusals of bad input, as a user sees them.

Each test runs `acci` as a process: installing the example application changes the catalogue,
which other unit tests check as it is built in. The processes point at a Temporal, PostgreSQL
and Redis where nothing listens: a command or query that were sent or asked would end in
``error (unavailable)`` there, so a refusal that says ``error (validation)`` sent nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.conftest import free_port

ACCI = str(Path(sys.executable).with_name("acci"))


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def nowhere() -> dict[str, str]:
    """An `acci` process's environment whose services are all ports nothing listens on."""
    return {
        **os.environ,
        "ACCI_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "ACCI_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/acci",
        "ACCI_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "ACCI_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F",
    }


def acci(env: dict[str, str], *args: str, stdin: str | None = None) -> Ran:
    done = subprocess.run(
        [ACCI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def listed(env: dict[str, str], verb: str) -> dict[str, dict[str, Any]]:
    """`acci <verb> --list --json`, by type name (checked to be sorted by it)."""
    ran = acci(env, verb, "--list", "--json")
    assert ran.code == 0, ran.err
    entries = json.loads(ran.out)
    names = [entry["type"] for entry in entries]
    assert names == sorted(names)
    return {entry["type"]: entry for entry in entries}


def refused(ran: Ran, message: str) -> None:
    """One ``error (validation)`` line starting with ``message``, exit status 1, nothing else."""
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err.startswith(f"error (validation): {message}"), ran.err
    assert ran.err.count("\n") == 1, ran.err


# --- the lists -----------------------------------------------------------------------------------


def test_command_list_names_built_in_and_plugged_in_types_with_their_schemas(
    nowhere: dict[str, str],
) -> None:
    commands = listed(nowhere, "command")
    create = commands["CreateTenant"]
    assert (create["application"], create["aggregate"]) == ("acci.tenancy", "Tenant")
    assert create["description"] == "Create a tenant, active from the start."
    assert {"tenant_id", "name", "settings"} <= create["schema"]["properties"].keys()

    issue = commands["IssueInvoice"]
    assert (issue["application"], issue["aggregate"]) == ("invoicing", "Invoice")
    assert issue["description"] == "Issue a new invoice to a customer."
    schema = issue["schema"]
    assert schema["title"] == "IssueInvoice"
    assert set(schema["properties"]) == {"invoice_id", "customer", "currency"}
    assert sorted(schema["required"]) == ["customer", "invoice_id"]
    assert schema["properties"]["currency"]["enum"] == ["EUR", "USD", "GBP"]
    assert {"AddInvoiceLine", "PayInvoice", "VoidInvoice", "RegisterUser"} <= commands.keys()


def test_query_list_names_built_in_and_plugged_in_types_with_their_schemas(
    nowhere: dict[str, str],
) -> None:
    queries = listed(nowhere, "query")
    details = queries["GetTenantDetails"]
    assert (details["application"], details["in_tenant"]) == ("acci.tenancy", True)
    assert (details["answer"], details["reads"]) == ("TenantView", ["tenants"])
    assert queries["ListTenants"]["in_tenant"] is False

    open_invoices = queries["ListOpenInvoices"]
    assert open_invoices["application"] == "invoicing"
    assert open_invoices["description"] == "The tenant's open invoices."
    assert (open_invoices["answer"], open_invoices["reads"]) == ("OpenInvoices", ["open_invoices"])
    properties = open_invoices["schema"]["properties"]
    assert {"tenant_id", "limit", "consistent_with"} <= properties.keys()
    assert properties["limit"]["default"] == 100
    assert "GetOpenInvoice" in queries


def test_the_lists_without_json_are_tables_of_name_application_and_description(
    nowhere: dict[str, str],
) -> None:
    ran = acci(nowhere, "command", "--list")
    assert ran.code == 0, ran.err
    header, *rows = ran.out.splitlines()
    assert header.split() == ["command", "type", "application", "description"]
    assert [row.split()[0] for row in rows] == sorted(listed(nowhere, "command"))
    (issue,) = [row for row in rows if row.startswith("IssueInvoice ")]
    assert issue.split(maxsplit=2)[1:] == ["invoicing", "Issue a new invoice to a customer."]

    ran = acci(nowhere, "query", "--list")
    assert ran.code == 0, ran.err
    (details,) = [row for row in ran.out.splitlines() if row.startswith("GetTenantDetails ")]
    # The docstring's reStructuredText quotes are not shown.
    assert details.split(maxsplit=2)[1:] == [
        "acci.tenancy",
        "One tenant; NotFoundError if the read model has no such tenant.",
    ]


def test_a_list_given_a_type_shows_that_type_only(nowhere: dict[str, str]) -> None:
    ran = acci(nowhere, "command", "PayInvoice", "--list", "--json")
    assert ran.code == 0, ran.err
    assert [entry["type"] for entry in json.loads(ran.out)] == ["PayInvoice"]
    ran = acci(nowhere, "query", "GetOpenInvoice", "--list")
    assert ran.code == 0, ran.err
    assert [row.split()[0] for row in ran.out.splitlines()[1:]] == ["GetOpenInvoice"]
    refused(acci(nowhere, "query", "GetInvoice", "--list"), "unknown query type 'GetInvoice'")


# --- commands refused before they are sent ---------------------------------------------------


def test_an_unknown_command_type_is_refused_naming_the_known_ones(
    nowhere: dict[str, str],
) -> None:
    ran = acci(nowhere, "command", "IssueInvoices", "--tenant", "t1", "--data", "{}")
    refused(ran, "unknown command type 'IssueInvoices'; known: AddInvoiceLine, AssignRole")
    assert "IssueInvoice," in ran.err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"invoice_id": "inv-1",', "--data is not JSON: Expecting property name"),
        ('["inv-1"]', "--data must be a JSON object, not an array"),
        ("null", "--data must be a JSON object, not null"),
        ('{"invoice_id": "inv-1"}', "invalid IssueInvoice: customer: Field required"),
        (
            '{"invoice_id": "inv 1", "customer": "Bob", "currency": "CHF"}',
            "invalid IssueInvoice: invoice_id: String should match pattern",
        ),
        (
            '{"invoice_id": "inv-1", "customer": "Bob", "colour": "red"}',
            "invalid IssueInvoice: colour: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_command_data_is_refused_before_anything_is_sent(
    nowhere: dict[str, str], data: str, message: str
) -> None:
    refused(acci(nowhere, "command", "IssueInvoice", "--tenant", "t1", "--data", data), message)


def test_data_nested_deeper_than_the_parser_goes_is_refused_in_one_line(
    nowhere: dict[str, str], tmp_path: Path
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    for verb, kind in (("command", "CreateTenant"), ("query", "ListTenants")):
        ran = acci(nowhere, verb, kind, "--tenant", "t1", "--data", f"@{deep}")
        refused(ran, f"--data @{deep} is nested more than 64 levels deep")
    settings = '{"a": ' + "[" * 30_000 + "]" * 30_000 + "}"
    ran = acci(nowhere, "tenant", "create", "-t", "t1", "--name", "T", "--settings", settings)
    assert (ran.code, ran.out) == (2, ""), ran
    assert ran.err.startswith("error (usage): Invalid value: --settings is nested too deeply")


def test_data_is_read_from_a_file_or_standard_input(
    nowhere: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "invoice.json"
    data.write_text('{"invoice_id": "inv-1", "amount_cents": -1}', encoding="utf-8")
    ran = acci(nowhere, "command", "PayInvoice", "-t", "t1", "--data", f"@{data}")
    refused(ran, "invalid PayInvoice: amount_cents: Input should be greater than or equal to 0")
    ran = acci(nowhere, "command", "PayInvoice", "-t", "t1", "--data", "-", stdin="[1]")
    refused(ran, "--data - (standard input) must be a JSON object, not an array")

    missing = tmp_path / "missing.json"
    ran = acci(nowhere, "command", "PayInvoice", "-t", "t1", "--data", f"@{missing}")
    assert (ran.code, ran.out) == (2, ""), ran
    assert ran.err.startswith(f"error (usage): Invalid value for '--data': cannot read {missing}")


def test_a_tenant_commands_tenant_id_defaults_to_the_tenant_and_is_checked(
    nowhere: dict[str, str],
) -> None:
    ran = acci(
        nowhere, "command", "CreateTenant", "--tenant", "no/slash", "--data", '{"name": "N"}'
    )
    refused(ran, "tenant id 'no/slash' must be 1-64 characters")
    # CreateTenant's own tenant_id, left out of the data, is --tenant's: only the name is wrong.
    ran = acci(nowhere, "command", "CreateTenant", "--tenant", "t1", "--data", '{"name": ""}')
    refused(ran, "invalid CreateTenant: name:")
    assert "tenant_id" not in ran.err


def test_a_command_needs_a_type_and_a_tenant_and_a_list_takes_neither_tenant_nor_data(
    nowhere: dict[str, str],
) -> None:
    cases = {
        ("command", "IssueInvoice", "--data", "{}"): "Missing option '--tenant' / '-t'",
        ("command", "--tenant", "t1"): "Missing argument 'COMMAND_TYPE' (or --list)",
        ("command", "--list", "--tenant", "t1", "--data", "{}"): "--list takes no --tenant, --data",
        ("query", "--list", "--consistent-with", "1:2"): "--list takes no --consistent-with",
    }
    for args, message in cases.items():
        ran = acci(nowhere, *args)
        assert (ran.code, ran.out) == (2, ""), ran
        assert ran.err == f"error (usage): {message}; see 'acci {args[0]} --help'\n"


# --- queries refused before they are asked -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("ListInvoices", "--tenant", "t1"),
            "unknown query type 'ListInvoices'; known: GetOpenInvoice, GetTenantActivity",
        ),
        (("ListOpenInvoices",), "ListOpenInvoices is asked in a tenant: give --tenant"),
        (("ListTenants", "--tenant", "t1"), "ListTenants spans tenants: it is asked without"),
        (
            ("ListOpenInvoices", "--tenant", "t1", "--data", '{"tenant_id": "t2"}'),
            "the data's tenant_id 't2' is not --tenant 't1'",
        ),
        (
            ("ListOpenInvoices", "--tenant", "t1", "--data", '{"limit": 0}'),
            "invalid ListOpenInvoices: limit: Input should be greater than or equal to 1",
        ),
        (
            ("GetOpenInvoice", "--tenant", "t1", "--data", '{"invoice": "inv-1"}'),
            "invalid GetOpenInvoice: invoice_id: Field required",
        ),
        (("ListTenants", "--data", "{nope"), "--data is not JSON"),
    ],
)
def test_bad_queries_are_refused_before_anything_is_asked(
    nowhere: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    refused(acci(nowhere, "query", *args), message)


@pytest.mark.parametrize(
    "verb",
    [
        ("publish-events", "--after", "0:0"),
        ("migrate-events", "--type", "UserRegistered"),
        ("backup", "create"),
        ("backup", "list"),
        ("backup", "restore", "b-1"),
        ("verify",),
    ],
)
@pytest.mark.parametrize("tenant", ["'; drop table x;--", "bad tenant", ""])
def test_a_malformed_tenant_option_is_a_usage_error_before_anything_starts(
    nowhere: dict[str, str], verb: tuple[str, ...], tenant: str
) -> None:
    ran = acci(nowhere, *verb, "--tenant", tenant)
    assert (ran.code, ran.out) == (2, ""), ran
    assert ran.err.startswith("error (usage): Invalid value for '--tenant' / '-t': tenant id")
