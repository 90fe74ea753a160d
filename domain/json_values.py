"""Whether a JSON-like value can be stored and read back: bounded nesting, valid Unicode text.

Shared by the command input (what a client may send) and the event store (what it may write),
so that one walk, with one wording, says what is wrong and where.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# A lone surrogate (U+D800..U+DFFF) is a Python str but no Unicode text: it cannot be encoded as
# UTF-8, so it would fail deep inside the database driver instead of here.
_SURROGATES: Final = range(0xD800, 0xE000)


def json_problem(value: object, *, max_depth: int, allow_nul: bool = True) -> str | None:
    """What makes ``value`` unfit to store, or None: containers nested deeper than
    ``max_depth`` (``value`` itself is level 1), a string or key with a lone surrogate, or, unless
    ``allow_nul``, with a NUL character.

    Iterative, so a value nested thousands of levels deep is refused, not a RecursionError.
    """
    stack: list[tuple[object, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item, allow_nul=allow_nul)
            if problem:
                return f"has a string{_at(path)} that {problem}"
            continue
        if isinstance(item, Mapping):
            children = [(f"{path}.{key}" if path else str(key), key, v) for key, v in item.items()]
        elif isinstance(item, list | tuple):
            children = [(f"{path}[{i}]", None, v) for i, v in enumerate(item)]
        else:
            continue
        if depth > max_depth:
            return f"is nested more than {max_depth} levels deep{_at(path)}"
        for child_path, key, child in children:
            if isinstance(key, str):
                problem = _text_problem(key, allow_nul=allow_nul)
                if problem:
                    return f"has a key{_at(path)} that {problem}"
            stack.append((child, depth + 1, child_path))
    return None


def _text_problem(text: str, *, allow_nul: bool) -> str | None:
    if not allow_nul and "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode()
    except UnicodeEncodeError:
        bad = next(c for c in text if ord(c) in _SURROGATES)
        return f"contains a lone surrogate {bad!r}, which is not valid Unicode text"
    return None


def _at(path: str) -> str:
    # Paths name keys sent by a client: cut, so a huge key cannot blow up the message.
    return f" at {path[:80]!r}" if path else ""
