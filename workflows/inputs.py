"""Decoding a workflow's input inside the workflow, so that bad input fails the run, not its task.

When the SDK decodes a workflow's argument itself, a payload that does not decode (not JSON, not
an object, a wrong field) is an error of the workflow *task*: Temporal retries the task forever,
the run stays RUNNING and its client waits forever. A workflow that is handed the raw payload
(``temporalio.common.RawValue``) and decodes it here instead turns every such failure into a
non-retryable ``ApplicationError`` of a named type: the run fails at once, and the Temporal CLI,
the Web UI and ``acci`` show what was wrong.

Pure and deterministic (no I/O): it runs in workflow code, also on replay.
"""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

import pydantic
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from acci.domain.errors import describe_problems
from acci.domain.json_values import json_problem

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

# The default of a workflow's raw argument: a start without any input decodes to "no input"
# instead of a TypeError in the workflow task. Typed Any because workflows declare their argument
# as the model clients send (see CommandWorkflow.run).
NO_INPUT: Final[Any] = RawValue(Payload())

_JSON: Final = b"json/plain"
# Deeper than any input model goes: only text problems are looked for here.
MAX_DEPTH: Final = 1_000


def decode_input(value: object, model: type[ModelT], *, what: str, error_type: str) -> ModelT:
    """``value`` (a raw payload, or an already decoded ``model``) as a ``model``; anything that
    does not decode is a non-retryable ApplicationError of ``error_type`` saying why."""
    if isinstance(value, model):
        return value
    if not isinstance(value, RawValue):
        raise _invalid(what, f"expected a JSON object, got {type(value).__name__}", error_type)
    encoding = value.payload.metadata.get("encoding", b"")
    if encoding != _JSON:
        shown = f"an input encoded as {encoding.decode('latin-1')!r}" if encoding else "no input"
        raise _invalid(what, f"expected a JSON object, got {shown}", error_type)
    try:
        # model_validate_json reads bytes strictly: invalid UTF-8, lone surrogate escapes and
        # nesting past its recursion limit are validation errors, like a wrong field.
        return model.model_validate_json(value.payload.data)
    except pydantic.ValidationError as e:
        raise _invalid(
            what, _json_text_problem(value.payload.data) or describe_problems(e), error_type
        ) from None
    except (ValueError, TypeError, RecursionError) as e:
        raise _invalid(what, f"{type(e).__name__}: {e}", error_type) from None


def _json_text_problem(data: bytes) -> str | None:
    """Where JSON the strict reader refused holds something that is no text (a lone surrogate
    escape, ``"\\ud800"``): the reader calls that invalid JSON, which names no field."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None  # not JSON indeed: the reader's own words say where
    problem = json_problem(value, max_depth=MAX_DEPTH)
    return None if problem is None else f"the input {problem}"


def _invalid(what: str, problem: str, error_type: str) -> ApplicationError:
    return ApplicationError(f"invalid {what}: {problem}", type=error_type, non_retryable=True)
