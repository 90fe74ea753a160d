"""How a pydantic model's fields become the arguments and options of a generated ``acci`` verb.

The tenant and user verbs are generated from the models they send or ask (domain commands in
``workers/cli_commands.py``, read-side queries in ``workers/cli_queries.py``), so that a new
command or query needs no hand-written typer function. The rules, in one place:

- ``tenant_id`` is the ``--tenant``/``-t`` option;
- any other ``*_id`` field is a positional argument ("The user id.");
- a text, number or flag field is an option of that type, ``--field-name``;
- a collection of those is a repeatable option (``--role a --role b``);
- a model or a mapping (a tenant's settings) is an option that takes a JSON object.

An option is required when its field is. A text, number or flag option shows its field's default
in ``--help``; any other option left out is left out of the model's data, so that the model's
own default applies. An option's name and help come from the caller's tables, else the field's
pydantic description, else its name.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from acci.workers.cli_support import TenantOption

TENANT_FIELD: Final = "tenant_id"

_SCALARS: Final = (str, int, float, bool)
_COLLECTIONS: Final = (list, tuple, set, frozenset)


@dataclass(frozen=True, slots=True)
class FieldParameter:
    """One field of a model as one parameter of a verb."""

    field: str
    parameter: inspect.Parameter
    # How the user names it in an error message: ``--settings``.
    shown: str = ""
    # True for a model or mapping given as JSON text: parsed into an object before it is sent.
    json: bool = False


def field_parameters(
    model: type[BaseModel],
    *,
    names: Mapping[str, str],
    help: Mapping[str, str],
    exclude: Collection[str] = (),
    with_tenant: bool = False,
) -> list[FieldParameter]:
    """The parameters of ``model``'s verb: id arguments, then ``--tenant``, then the options.

    ``names`` and ``help`` map a field to its option name (``--name``) and help text, where the
    defaults (``--field-name``; the description; the name) do not read well. ``with_tenant``
    adds ``--tenant`` for a model without a ``tenant_id`` (a command's tenant is its envelope's).
    """
    arguments: list[FieldParameter] = []
    tenant: list[FieldParameter] = []
    options: list[FieldParameter] = []
    if with_tenant and TENANT_FIELD not in model.model_fields:
        tenant.append(FieldParameter(TENANT_FIELD, keyword("tenant", TenantOption)))
    for name, info in model.model_fields.items():
        if name in exclude:
            continue
        if name == TENANT_FIELD:
            tenant.append(FieldParameter(name, keyword("tenant", TenantOption)))
        elif name.endswith("_id"):
            arguments.append(_argument(name, info))
        else:
            text = help.get(name) or info.description or f"{name.replace('_', ' ').capitalize()}."
            options.append(_option(model, name, info, option=names.get(name), help=text))
    return [*arguments, *tenant, *options]


def model_data(fields: Sequence[FieldParameter], values: Mapping[str, Any]) -> dict[str, Any]:
    """The model's data from the values typer parsed (a JSON option's text parsed to an object);
    a field the user left out is left out, so that the model's default applies."""
    data: dict[str, Any] = {}
    for field in fields:
        value = values[field.parameter.name]
        if value is None or value == []:
            continue
        data[field.field] = _json_object(value, field.shown) if field.json else value
    return data


def generated_verb(
    parameters: Sequence[inspect.Parameter], run: Callable[[dict[str, Any]], None]
) -> Callable[..., None]:
    """A function typer can register as a verb: it takes ``parameters`` (by name) and hands
    their values to ``run``."""

    def verb(**values: Any) -> None:
        run(values)

    # Typer reads a verb's parameters from its signature: this one is made, not written.
    verb.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return verb


def keyword(
    name: str, annotation: Any, default: Any = inspect.Parameter.empty
) -> inspect.Parameter:
    """A verb's parameter (keyword-only: generated verbs are called with every value by name)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def _argument(name: str, info: FieldInfo) -> FieldParameter:
    what = name.removesuffix("_id").replace("_", " ")
    kind = _scalar(_without_none(info.annotation)[0]) or str
    argument = typer.Argument(help=f"The {what} id.")
    return FieldParameter(name, keyword(name, Annotated[kind, argument]))


def _option(
    model: type[BaseModel], name: str, info: FieldInfo, *, option: str | None, help: str
) -> FieldParameter:
    declared = option or f"--{name.replace('_', '-')}"
    annotation, optional = _without_none(info.annotation)
    required = info.is_required()
    # An optional option left out is None, and None is left out of the data: the model's own
    # default applies. A scalar's default is the option's own instead (--help shows it).
    default: Any = inspect.Parameter.empty if required else None
    json_text = False
    if (scalar := _scalar(annotation)) is not None:
        kind: Any = scalar
        if not required and info.default is not None and isinstance(info.default, scalar):
            default = info.default
    elif (item := _collection_of(annotation)) is not None:
        kind = types.GenericAlias(list, (item,))
    elif _is_json(annotation):
        kind, json_text = str, True
    else:
        raise TypeError(
            f"{model.__name__}.{name}: no command-line form for {info.annotation!r}"
            " (text, number, flag, a collection of those, or a model given as JSON)"
        )
    if default is None or optional:
        kind = kind | None
    parameter = keyword(name, Annotated[kind, typer.Option(declared, help=help)], default)
    return FieldParameter(name, parameter, shown=declared, json=json_text)


def _without_none(annotation: Any) -> tuple[Any, bool]:
    """``annotation`` without ``| None``, and whether it had it."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def _scalar(annotation: Any) -> type | None:
    """The Python type typer parses ``annotation`` as, if it is a scalar (or a Literal of one)."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        kinds = {type(value) for value in get_args(annotation)}
        annotation = kinds.pop() if len(kinds) == 1 else None
    return annotation if annotation in _SCALARS else None


def _collection_of(annotation: Any) -> type | None:
    """The item type of a list, tuple or set of scalars."""
    if get_origin(annotation) not in _COLLECTIONS:
        return None
    items = [a for a in get_args(annotation) if a is not Ellipsis]
    return _scalar(items[0]) if len(items) == 1 else None


def _is_json(annotation: Any) -> bool:
    origin = get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, (BaseModel, dict, Mapping))


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"{option} is not JSON: {e}") from None
    except RecursionError:
        raise typer.BadParameter(f"{option} is nested too deeply") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{option} must be a JSON object")
    return value
