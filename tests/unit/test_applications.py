"""A broken application is refused at start, naming the application and the conflict, and
nothing of it is installed: no command, event, upcaster, projection, table or query.

Every application here is a fresh declaration with made-up type names ("gadgets"). None is
installed: unit tests share one process, and other modules check the built-in catalogue and
registry exactly. A conflict with an installed application is one with the built-in
``acci.tenancy``; two plugged-in applications that conflict are started in an ``acci`` process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlmodel
from pydantic import BaseModel

from acci import (
    Application,
    ApplicationDeclarationError,
    Change,
    Command,
    DomainEvent,
    EventSourced,
    Projection,
    RecordedEvent,
    RelatedAggregate,
    TenantQuery,
    registry,
)
from acci.domain import catalogue
from acci.readmodels.installed import install, installed, projection_names, read_model_tables
from acci.readmodels.installed import query_handlers as installed_queries
from acci.readmodels.read_model import ReadModel
from acci.workers.apps import ApplicationLoadError, load_applications

ROOT = Path(__file__).resolve().parents[2]
ACCI = str(Path(sys.executable).with_name("acci"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a small made-up domain ----------------------------------------------------------------------


class GadgetMade(DomainEvent):
    """A gadget was made."""

    event_type: ClassVar[str] = "GadgetMade"
    event_version: ClassVar[int] = 1

    name: str


class GadgetPainted(DomainEvent):
    """Version 2: a colour; version 1 had none."""

    event_type: ClassVar[str] = "GadgetPainted"
    event_version: ClassVar[int] = 2

    colour: str


class GadgetPolished(DomainEvent):
    """Declares no event_version: refused."""

    event_type: ClassVar[str] = "GadgetPolished"

    shine: int


class TenantCreatedAgain(DomainEvent):
    """A second class under the built-in TenantCreated's stored name."""

    event_type: ClassVar[str] = "TenantCreated"
    event_version: ClassVar[int] = 1

    name: str


class MakeGadget(Command):
    """Make a gadget."""

    command_type: ClassVar[str] = "MakeGadget"

    gadget_id: str
    name: str

    @property
    def aggregate_id(self) -> str:
        return self.gadget_id


class CreateTenantForGadgets(MakeGadget):
    """A second command under the built-in CreateTenant's wire name."""

    command_type: ClassVar[str] = "CreateTenant"


class GadgetState(BaseModel):
    name: str = ""


class _Gadget(EventSourced[GadgetState, MakeGadget]):
    aggregate_type: ClassVar[str] = "Gadget"
    state_schema_version: ClassVar[int] = 1

    @staticmethod
    def initial_state() -> GadgetState:
        return GadgetState()

    @staticmethod
    def decide(command: MakeGadget, state: GadgetState) -> list[DomainEvent]:
        return [GadgetMade(name=command.name)]

    @staticmethod
    def evolve(state: GadgetState, event: DomainEvent) -> GadgetState:
        return state


class Gadget(_Gadget):
    command_types: ClassVar[tuple[type[Command], ...]] = (MakeGadget,)


class GadgetTakingCreateTenant(_Gadget):
    aggregate_type: ClassVar[str] = "GadgetTwo"
    command_types: ClassVar[tuple[type[Command], ...]] = (CreateTenantForGadgets,)


class GadgetNamedTenant(_Gadget):
    """An aggregate under the built-in Tenant's type name."""

    aggregate_type: ClassVar[str] = "Tenant"
    command_types: ClassVar[tuple[type[Command], ...]] = ()


class GadgetsProjection(Projection):
    """Writes ``gadgets`` (and, in a subclass, a table of another application)."""

    name = "gadgets"
    tables = frozenset({"gadgets"})

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        return []


class GadgetsAndTenantsProjection(GadgetsProjection):
    tables = frozenset({"gadgets", "tenants"})


class TenantsAgainProjection(GadgetsProjection):
    """A second projection under the built-in ``tenants`` projection's name."""

    name = "tenants"


class GadgetView(BaseModel):
    name: str


class GetGadget(TenantQuery[GadgetView]):
    projections: ClassVar[tuple[str, ...]] = ("gadgets",)
    result_type: ClassVar[type[BaseModel]] = GadgetView


class GetPaintedGadget(TenantQuery[GadgetView]):
    """Reads a projection that no application declares."""

    projections: ClassVar[tuple[str, ...]] = ("painted_gadgets",)
    result_type: ClassVar[type[BaseModel]] = GadgetView


async def _no_gadget(query: Any) -> GadgetView:
    return GadgetView(name="none")


GADGETS_DDL = {1: "CREATE TABLE {gadgets} (name text PRIMARY KEY)"}


class GadgetRow(sqlmodel.SQLModel, table=True):
    __tablename__ = "gadgets"
    __table_args__ = {"schema": "test_applications"}  # not read_models: never created

    name: str = sqlmodel.Field(primary_key=True)


class TenantsRowAgain(sqlmodel.SQLModel, table=True):
    __tablename__ = "tenants"
    __table_args__ = {"schema": "test_applications"}

    name: str = sqlmodel.Field(primary_key=True)


class MoreTenantsProjection(GadgetsProjection):
    """Another read model writing the built-in ``tenants`` table."""

    name = "more_tenants"
    tables = frozenset({"tenants"})


def gadget_model(**declared: Any) -> ReadModel:
    """The gadgets read model, with ``declared`` replacing its parts."""
    parts: dict[str, Any] = {
        "projection": GadgetsProjection,
        "rows": (GadgetRow,),
        "ddl": GADGETS_DDL,
        "queries": {GetGadget: lambda pool: _no_gadget},
    }
    return ReadModel(**{**parts, **declared})


def gadgets(**declared: Any) -> Application:
    """A whole, valid gadgets application, with ``declared`` replacing its parts."""
    parts: dict[str, Any] = {
        "name": "gadgets",
        "aggregates": [Gadget],
        "events": [GadgetMade, GadgetPainted],
        "upcasters": {("GadgetPainted", 1): lambda data: {**data, "colour": "grey"}},
        "read_models": [gadget_model()],
    }
    return Application(**{**parts, **declared})


def what_is_installed() -> dict[str, object]:
    """Everything an installed application can add to, as a user of ACCI sees it."""
    return {
        "applications": [app.name for app in installed()],
        "aggregates": dict(catalogue.AGGREGATES),
        "command_types": dict(catalogue.COMMAND_TYPES),
        "rules": {name: list(catalogue.rules_for(a)) for name, a in catalogue.AGGREGATES.items()},
        "event_types": registry.event_types(),
        "upcasters": {
            (event_type, version)
            for event_type in registry.event_types()
            for version in range(1, registry.current_version(event_type))
            if registry.has_upcaster(event_type, version)
        },
        "projections": projection_names(),
        "read_models": read_model_tables(),
        "queries": set(installed_queries()),
    }


def refused(app: Application) -> str:
    """Install ``app``; it must be refused with nothing installed. Returns the message."""
    before = what_is_installed()
    with pytest.raises(ApplicationDeclarationError) as refusal:
        install(app)
    assert what_is_installed() == before
    return str(refusal.value)


# --- the declaration on its own ------------------------------------------------------------------


def test_an_event_without_a_version_is_refused() -> None:
    message = refused(gadgets(events=[GadgetMade, GadgetPolished]))
    assert message == (
        "application 'gadgets': event 'GadgetPolished' (GadgetPolished) declares no"
        " event_version >= 1"
    )


def test_a_projection_writing_a_table_it_does_not_declare_is_refused() -> None:
    model = gadget_model(projection=GadgetsAndTenantsProjection)
    message = refused(gadgets(read_models=[model]))
    assert message == (
        "application 'gadgets': read model 'gadgets': its row types are for tables ['gadgets'],"
        " its projection writes ['gadgets', 'tenants']"
    )


def test_an_upcaster_for_an_event_of_another_application_is_refused() -> None:
    message = refused(
        gadgets(upcasters={("TenantCreated", 1): lambda data: data}),
    )
    assert message == (
        "application 'gadgets': an upcaster is declared for 'TenantCreated', not one of the"
        " application's events"
    )


def test_an_upcaster_from_the_current_version_is_refused() -> None:
    message = refused(gadgets(upcasters={("GadgetPainted", 2): lambda data: data}))
    assert message == (
        "application 'gadgets': the upcaster of 'GadgetPainted' from version 2 must be from 1"
        " to 1 (the current version is 2)"
    )


def test_an_event_whose_older_versions_have_no_upcaster_is_refused() -> None:
    """Stored version-1 GadgetPainted events could never be read: refused at start."""
    message = refused(gadgets(upcasters={}))
    assert message == (
        "application 'gadgets': event 'GadgetPainted' is at version 2, with no upcaster from [1]"
    )


def test_a_query_reading_a_projection_no_application_declares_is_refused() -> None:
    model = gadget_model(queries={GetPaintedGadget: lambda pool: _no_gadget})
    message = refused(gadgets(read_models=[model]))
    assert message == (
        "application 'gadgets': query type GetPaintedGadget reads projection(s)"
        " ['painted_gadgets'], which none declares"
    )


def test_ddl_that_does_not_create_its_table_is_refused() -> None:
    model = gadget_model(ddl={1: "CREATE TABLE {gizmos} (name text)"})
    message = refused(gadgets(read_models=[model]))
    assert message == (
        "application 'gadgets': read model 'gadgets': the DDL of version 1 names tables"
        " ['gizmos'] as placeholders, the projection writes ['gadgets']"
    )


def test_ddl_with_a_stray_brace_is_refused() -> None:
    model = gadget_model(ddl={1: "CREATE TABLE {gadgets} (doc jsonb DEFAULT '{}')"})
    message = refused(gadgets(read_models=[model]))
    assert message == (
        "application 'gadgets': read model 'gadgets': the DDL of version 1 names tables"
        " ['', 'gadgets'] as placeholders, the projection writes ['gadgets']"
    )


def test_an_application_name_that_is_not_lower_case_is_refused() -> None:
    message = refused(gadgets(name="Gadgets!"))
    assert message == (
        "application name 'Gadgets!' must be lower-case letters, digits, '_', '.', '-'"
    )


# --- conflicts with an installed application (the built-in one) ----------------------------------


def test_an_event_type_another_application_registers_is_refused() -> None:
    message = refused(gadgets(events=[GadgetMade, GadgetPainted, TenantCreatedAgain]))
    assert message == (
        "application 'gadgets': event type 'TenantCreated' is registered by application"
        " 'acci.tenancy' already"
    )


def test_a_command_type_another_application_declares_is_refused() -> None:
    message = refused(gadgets(aggregates=[Gadget, GadgetTakingCreateTenant]))
    assert message == (
        "application 'gadgets': command type 'CreateTenant' is declared by application"
        " 'acci.tenancy' already"
    )


def test_an_aggregate_type_another_application_declares_is_refused() -> None:
    message = refused(gadgets(aggregates=[Gadget, GadgetNamedTenant]))
    assert message == (
        "application 'gadgets': aggregate type 'Tenant' is declared by application"
        " 'acci.tenancy' already"
    )


def test_a_rule_on_an_aggregate_no_application_declares_is_refused() -> None:
    rule = RelatedAggregate(GadgetTakingCreateTenant, applies_to=(Gadget,))
    message = refused(gadgets(rules=[rule]))
    assert message == (
        "application 'gadgets': a rule needs aggregate 'GadgetTwo', which no installed"
        " application declares"
    )


def test_a_projection_name_another_application_declares_is_refused() -> None:
    again = gadget_model(projection=TenantsAgainProjection, queries={})
    message = refused(gadgets(read_models=[gadget_model(), again]))
    assert message == (
        "application 'gadgets': read model 'tenants' is declared by application 'acci.tenancy'"
    )


def test_a_read_model_table_another_application_declares_is_refused() -> None:
    more = ReadModel(
        projection=MoreTenantsProjection,
        rows=(TenantsRowAgain,),
        ddl={1: "CREATE TABLE {tenants} (name text PRIMARY KEY)"},
    )
    message = refused(gadgets(read_models=[gadget_model(), more]))
    assert message == (
        "application 'gadgets': read-model table 'tenants' is declared by read model"
        " 'tenants' of application 'acci.tenancy'"
    )


def test_a_second_application_of_an_installed_name_is_refused() -> None:
    message = refused(gadgets(name="acci.tenancy"))
    assert message == (
        "application 'acci.tenancy': another application of this name is installed already"
    )


# --- ACCI_APPS naming something that is not an application ---------------------------------------

NOT_AN_APPLICATION = {"name": "gadgets"}


def load_refused(name: str) -> str:
    """``load_applications`` with ACCI_APPS ``name``: refused, nothing installed."""
    before = what_is_installed()
    with pytest.raises(ApplicationLoadError) as refusal:
        load_applications([name])
    assert what_is_installed() == before
    return str(refusal.value)


def test_acci_apps_naming_a_missing_module_is_refused() -> None:
    message = load_refused("gadget_shop.app")
    assert message == (
        "ACCI_APPS entry 'gadget_shop.app' cannot be imported: ModuleNotFoundError:"
        " No module named 'gadget_shop'"
    )


def test_acci_apps_naming_a_module_without_an_app_is_refused() -> None:
    message = load_refused("tests.unit.test_applications")
    assert message == (
        "ACCI_APPS entry 'tests.unit.test_applications': module 'tests.unit.test_applications'"
        " has no attribute 'app'"
    )


def test_acci_apps_naming_something_that_is_not_an_application_is_refused() -> None:
    message = load_refused("tests.unit.test_applications:NOT_AN_APPLICATION")
    assert message == (
        "ACCI_APPS entry 'tests.unit.test_applications:NOT_AN_APPLICATION' is a dict, not an"
        " acci.Application"
    )


# --- two plugged-in applications that conflict, started as a user starts them -------------------


class GadgetShipped(DomainEvent):
    event_type: ClassVar[str] = "GadgetShipped"
    event_version: ClassVar[int] = 1


class ParcelShipped(DomainEvent):
    """Another application's event under the same stored name."""

    event_type: ClassVar[str] = "GadgetShipped"
    event_version: ClassVar[int] = 1


SHOP = Application(name="gadget-shop", events=[GadgetShipped])
PARCELS = Application(name="parcels", events=[ParcelShipped])


def test_a_worker_with_two_applications_registering_one_event_type_stops_naming_both() -> None:
    apps = "tests.unit.test_applications:SHOP, tests.unit.test_applications:PARCELS"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ACCI_APPS": apps,
        # Nothing answers here: a worker that got past the applications would fail, not run.
        "ACCI_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "ACCI_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        "ACCI_TASK_QUEUE": "gadgets-never-polled",
    }
    done = subprocess.run(
        [ACCI, "worker"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error (application): ACCI_APPS entry 'tests.unit.test_applications:PARCELS':"
        " application 'parcels': event type 'GadgetShipped' is registered by application"
        " 'gadget-shop' already"
    )
