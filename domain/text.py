"""Free-text value types (names, reasons, email addresses) as pydantic ``Annotated`` types."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Final

from pydantic import AfterValidator, Strict

from acci.domain.errors import shown

MAX_NAME_LENGTH: Final = 200
MAX_REASON_LENGTH: Final = 500
MAX_EMAIL_LENGTH: Final = 254
MAX_EMAIL_LOCAL_LENGTH: Final = 64

# Categories no one types on purpose: C0/C1 controls, lone surrogates, line/paragraph separators.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Bidi embeddings, overrides and isolates reorder what a reader sees ("Trojan Source" spoofing).
# Other format characters stay allowed: ZWJ/ZWNJ are needed by emoji and by Persian or Indic text.
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_EMAIL_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Pragmatic, not RFC 5322: dot-atom local part, DNS labels, an alphabetic TLD, ASCII only.
EMAIL_PATTERN: Final = rf"^{_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*@(?:{_EMAIL_LABEL}\.)+[A-Za-z]{{2,63}}$"
_EMAIL: Final = re.compile(EMAIL_PATTERN)


def _clean_text(value: str, *, what: str, max_length: int, allowed_controls: str) -> str:
    # NFC first, so that the same name typed on two keyboards compares (and renames) as equal.
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise ValueError(f"{what} must not be empty")
    if len(text) > max_length:
        raise ValueError(f"{what} {shown(text)} is {len(text)} characters; at most {max_length}")
    if text.isascii() and text.isprintable():
        return text  # no control, separator, surrogate or bidi character: none is printable ASCII
    for char in text:
        if char in allowed_controls:
            continue
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES or char in _BIDI_CONTROLS:
            raise ValueError(f"{what} {shown(text)} contains control character {char!r}")
    return text


def _check_name(value: str) -> str:
    return _clean_text(value, what="name", max_length=MAX_NAME_LENGTH, allowed_controls="")


def _check_reason(value: str) -> str:
    # Reasons are prose: a line break or a tab is fine there, unlike in a name.
    return _clean_text(value, what="reason", max_length=MAX_REASON_LENGTH, allowed_controls="\n\t")


def _check_email(value: str) -> str:
    email = value.strip()
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValueError(
            f"email {shown(email)} is {len(email)} characters; at most {MAX_EMAIL_LENGTH}"
        )
    if not _EMAIL.fullmatch(email):
        raise ValueError(f"email {shown(email)} is not a valid address (local@domain.tld)")
    local, _, domain = email.rpartition("@")
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise ValueError(
            f"email {shown(email)} has a local part over {MAX_EMAIL_LOCAL_LENGTH} characters"
        )
    # Domains are case-insensitive; local parts may not be, so only the domain is lowered.
    return f"{local}@{domain.lower()}"


# Strict: text arrives as JSON strings; coercing bytes or numbers into text would hide a bug.
Name = Annotated[str, Strict(), AfterValidator(_check_name)]
"""A display name: NFC, stripped, 1-200 characters, no control characters."""

Reason = Annotated[str, Strict(), AfterValidator(_check_reason)]
"""A free-text reason: NFC, stripped, 1-500 characters, line breaks and tabs allowed."""

Email = Annotated[str, Strict(), AfterValidator(_check_email)]
"""An email address: stripped, at most 254 characters, with its domain lowercased."""
