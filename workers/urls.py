"""Service URLs as they may be shown to a user: never with a password."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from psycopg.conninfo import make_conninfo

# libpq also takes "host=… password=…" strings, and a URL may carry ?password=…
_PASSWORD_PARAM: Final = re.compile(r"""\s*\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S*)""")


def without_password(url: str) -> str:
    """``url`` with any password taken out (the user, host, port, path and options stay)."""
    if "://" not in url:
        return _PASSWORD_PARAM.sub("", url).strip()
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    netloc = f"{user}@{hostport}" if at and user else hostport
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"])
    return parts._replace(netloc=netloc, query=query).geturl()


def where(url: str) -> str:
    """host:port/path of a URL, without its credentials."""
    return url.rpartition("@")[2]


def app_database_url(database_url: str, app_url: str | None, *, role: str = "acci_app") -> str:
    """Where tenant-scoped work connects: ``app_url`` if given, else ``database_url`` as the
    app role, with no password (a server that trusts local connections, as the embedded
    default does; set the app URL with its password anywhere else)."""
    if app_url:
        return app_url
    return make_conninfo(without_password(database_url), user=role)
