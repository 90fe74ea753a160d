"""The full stack's files as data: docker-compose.yml, the Prometheus config, Grafana's
provisioning and the ACCI dashboard, and the metric names a PromQL expression reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "ops"
PROMETHEUS_CONFIG = OPS / "prometheus" / "prometheus.yml"
GRAFANA = OPS / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "acci.json"

# Series Prometheus makes itself for every target, not read from any exposition.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    data = load_yaml(ROOT / "docker-compose.yml")
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


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
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}


def exported_names(exposition: Iterable[str]) -> set[str]:
    """The series names Prometheus would store from these scrapes (text format).

    A family with samples contributes its sample names exactly as exposed; a family declared
    without samples yet (a labelled metric nobody observed) contributes the names its samples
    will have, by its type (a counter ``x`` -> ``x_total``, as prometheus_client exposes it).
    """
    names: set[str] = set()
    for text in exposition:
        for family in text_string_to_metric_families(text):
            if family.samples:
                names.update(s.name for s in family.samples)
            else:
                suffixes = _SUFFIXES.get(family.type, ("",))
                names.update(family.name + suffix for suffix in suffixes)
    return names
