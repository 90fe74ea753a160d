"""The full stack's files as data: docker-compose.yml, the Prometheus config, Grafana's
provisioning and the ACCI dashboard, and the metric names a PromQL expression reads."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
OPS = ROOT / "ops"
PROMETHEUS_CONFIG = OPS / "prometheus" / "prometheus.yml"
GRAFANA = OPS / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "acci.json"

# Series Prometheus makes itself for every target, not read from any exposition.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


# Compose's interpolation: ${NAME}, ${NAME:-default}, ${NAME:?error} ($$ is a literal $).
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}")


def variables(text: str) -> set[str]:
    """The names of the variables compose interpolates into ``text``."""
    return set(_VARIABLE.findall(text.replace("$$", "")))


def only_variables(value: str) -> bool:
    """Whether ``value`` is nothing but variable references (``${PASSWORD:?...}``)."""
    return bool(value) and not _VARIABLE.sub("", value.replace("$$", "")).strip()


def with_placeholders(value: str) -> str:
    """``value`` with each variable reference replaced by ``VALUE`` (to parse a URL)."""
    return _VARIABLE.sub("VALUE", value.replace("$$", "$"))


def env_file(path: Path) -> dict[str, str]:
    """A compose env file's ``NAME=value`` lines (comments and blank lines left out)."""
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not NAME=value"
            found[name.strip()] = value.strip()
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose also takes a list of NAME=value)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(str(item).partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    """The container side of a service's published ports ("127.0.0.1:9464:9464" -> 9464)."""
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def published(service: dict[str, Any]) -> set[str]:
    return {str(p) for p in service.get("ports", [])}


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts of this repository's files: container path -> host path."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a container path of the service is bound to, if any."""
    for target, source in mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    return None


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows only group them), nested rows included."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panels({"panels": panel.get("panels", [])})
        else:
            yield panel


def expressions(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of the dashboard."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels and Grafana
    variables left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
}


def exported_names(exposition: Iterable[str]) -> set[str]:
    """The series names Prometheus stores from these scrapes (text format 0.0.4).

    Read from the text as Prometheus reads it (prometheus_client's parser would add ``_total``
    to a counter exposed without it, as the Temporal SDK's are): every sample's name, and for a
    family declared without samples yet (a labelled metric nobody observed), the names its
    samples will have by its ``# TYPE`` (prometheus_client declares a counter as ``x_total``).
    """
    names: set[str] = set()
    for text in exposition:
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(maxsplit=3)
                names.update(name + suffix for suffix in _SUFFIXES.get(kind.strip(), ("",)))
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def promtool() -> str:
    """promtool's path (Debian's ``prometheus`` package, which ``make test`` installs when it is
    missing): a check that needs it fails loudly without it, never skips."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: `make test` installs it (Debian's prometheus package)",
            pytrace=False,
        )
    return path
