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

from typing import Any, Final, TypeVar

import pydantic
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from acci.domain.errors import describe_problems

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

# The default of a workflow's raw argument: a start without any input decodes to "no input"
# instead of a TypeError in the workflow task. Typed Any because workflows declare their argument
# as the model clients send (see CommandWorkflow.run).
NO_INPUT: Final[Any] = RawValue(Payload())

_JSON: Final = b"json/plain"


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
        raise _invalid(what, describe_problems(e), error_type) from None
    except (ValueError, TypeError, RecursionError) as e:
        raise _invalid(what, f"{type(e).__name__}: {e}", error_type) from None


def _invalid(what: str, problem: str, error_type: str) -> ApplicationError:
    return ApplicationError(f"invalid {what}: {problem}", type=error_type, non_retryable=True)
