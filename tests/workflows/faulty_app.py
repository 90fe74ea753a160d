"""A made-up application whose decision has a bug (``MakeGizmo`` with ``fail``): installed only
in the worker process of ``test_faulty_application.py`` (``ACCI_APPS``), never in the tests'
own process, whose catalogue other modules check exactly."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from acci import Application, Command, DomainEvent, EventSourced, requires_active_tenant


class GizmoMade(DomainEvent):
    """A gizmo was made."""

    event_type: ClassVar[str] = "GizmoMade"
    event_version: ClassVar[int] = 1

    name: str


class MakeGizmo(Command):
    """Make a gizmo; ``fail`` makes the decision raise, as a bug in it would."""

    command_type: ClassVar[str] = "MakeGizmo"
    allowed_roles: ClassVar[frozenset[str]] = frozenset({"owner", "admin", "member"})

    gizmo_id: str = Field(min_length=1, max_length=50, pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=1, max_length=50)
    fail: bool = False
    note: str = ""  # unbounded: the platform's own size limit is what refuses a huge one

    @property
    def aggregate_id(self) -> str:
        """The gizmo id."""
        return self.gizmo_id


class GizmoState(BaseModel):
    """Whether the gizmo was made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    made: bool = False


class Gizmo(EventSourced[GizmoState, MakeGizmo]):
    """A gizmo of one tenant."""

    aggregate_type: ClassVar[str] = "Gizmo"
    state_schema_version: ClassVar[int] = 1
    command_types: ClassVar[tuple[type[Command], ...]] = (MakeGizmo,)

    @staticmethod
    def initial_state() -> GizmoState:
        """Not made yet."""
        return GizmoState()

    @staticmethod
    def decide(command: MakeGizmo, state: GizmoState) -> list[DomainEvent]:
        """A gizmo made; a RuntimeError when asked to fail (the bug)."""
        if command.fail:
            raise RuntimeError("the gizmo's decide has a bug")
        return [GizmoMade(name=command.name)]

    @staticmethod
    def evolve(state: GizmoState, event: DomainEvent) -> GizmoState:
        """Made."""
        return state.model_copy(update={"made": True})


app = Application(
    name="faulty",
    aggregates=[Gizmo],
    rules=[requires_active_tenant(Gizmo)],
    events=(GizmoMade,),
)
