"""The files users run without us: docker-compose.yml and the settings defaults agree."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from acci.workers.settings import Settings
from tests.stack_files import with_placeholders

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("service", "port"), [("postgres", 5432), ("redis", 6379), ("rabbitmq", 5672)]
)
def test_compose_publishes_each_service_on_the_port_the_defaults_use(
    service: str, port: int
) -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    published = [str(p) for p in services[service]["ports"]]
    assert f"127.0.0.1:{port}:{port}" in published
    assert "healthcheck" in services[service]


def test_default_settings_point_at_the_compose_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACCI_DATABASE_URL", "ACCI_REDIS_URL", "ACCI_RABBITMQ_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    db = conninfo_to_dict(settings.database_url.get_secret_value())
    assert (db["host"], db["port"], db["user"], db["dbname"]) == (
        "127.0.0.1",
        "5432",
        "postgres",
        "acci",
    )
    # The same superuser as compose's, which asks for its password (from .env) where the
    # embedded default's local server trusts 127.0.0.1.
    postgres = compose()["services"]["postgres"]  # type: ignore[index]
    assert postgres["environment"]["POSTGRES_USER"] == db["user"]
    assert postgres["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "127.0.0.1:6379" in settings.redis_url.get_secret_value()
    assert "127.0.0.1:5672" in settings.rabbitmq_url.get_secret_value()


def test_settings_come_from_acci_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCI_MAX_PAYLOAD_BYTES", "4096")
    monkeypatch.setenv("ACCI_DATABASE_URL", "postgresql://u:secret@db:5432/x")
    settings = Settings()
    assert settings.max_payload_bytes == 4096
    # Secrets stay out of reprs (and so out of logs).
    assert "secret" not in repr(settings)


def test_a_bad_setting_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCI_MAX_EVENTS_PER_APPEND", "0")
    with pytest.raises(ValueError, match="max_events_per_append"):
        Settings()


def test_the_full_stack_runs_a_worker_against_the_compose_services() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    worker = services["acci-worker"]
    env = worker["environment"]
    # Passwords from .env (tests/unit/test_full_stack.py checks that none is written here).
    urls = {k: with_placeholders(v) for k, v in env.items() if k.endswith("_URL")}
    assert urls["ACCI_DATABASE_URL"].startswith("postgresql://postgres:VALUE@postgres:5432/")
    assert urls["ACCI_APP_DATABASE_URL"].startswith("postgresql://acci_app:VALUE@postgres:5432/")
    assert urls["ACCI_RABBITMQ_URL"].startswith("amqp://VALUE:VALUE@rabbitmq:5672/")
    assert urls["ACCI_REDIS_URL"].startswith("redis://:VALUE@redis:6379/")
    assert env["ACCI_TEMPORAL_ADDRESS"] == "temporal:7233"
    # The worker waits for the search attributes its workflows set.
    assert worker["depends_on"]["temporal-setup"]["condition"] == "service_completed_successfully"
    setup = " ".join(services["temporal-setup"]["command"])
    for name in ("TenantId", "AggregateId", "CommandType"):
        assert name in setup
    assert "127.0.0.1:8233:8233" in services["temporal-ui"]["ports"]
    assert (ROOT / worker["build"] / "Dockerfile").exists()


def test_the_worker_image_installs_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("domain", "eventstore", "readmodels", "activities", "workflows", "workers"):
        assert f"COPY {package} {package}" in dockerfile


LAYERS = ("domain", "eventstore", "readmodels", "activities", "workflows", "workers")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_installed_under_acci() -> None:
    """A subpackage added to a layer (a new folder with an ``__init__.py``) must be listed, or
    the wheel would leave it out."""
    setuptools = _pyproject()["tool"]["setuptools"]
    folders = {
        ".".join(("acci", *init.parent.relative_to(ROOT).parts))
        for layer in LAYERS
        for init in (ROOT / layer).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == {"acci", *folders}
    assert setuptools["package-dir"] == {"acci": "acci", **{f"acci.{d}": d for d in LAYERS}}


def test_the_public_api_is_the_listed_names_and_importing_it_loads_nothing_else() -> None:
    code = (
        "import sys, acci\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('acci.'))\n"
        "assert loaded == [], loaded\n"
        "assert acci.__all__ == sorted(acci._PUBLIC), acci.__all__\n"
        "missing = [n for n in acci.__all__ if getattr(acci, n, None) is None]\n"
        "assert missing == [], missing\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    """Nothing with a generic name (domain, workers, …) lands in site-packages."""
    # From a copy of the tracked files: setuptools builds in the source tree (./build).
    source = tmp_path / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file() and not (ROOT / name).is_symlink():
            target.write_bytes((ROOT / name).read_bytes())
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("acci-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"acci", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "acci/eventstore/migrations/001_event_store.sql" in names
    assert "acci/readmodels/changes/planner.py" in names


def test_every_setting_is_in_the_readme_settings_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Settings\n") : readme.index("\n## The `acci` command line")]
    names = [
        field.validation_alias
        if isinstance(field.validation_alias, str)
        else f"ACCI_{name.upper()}"
        for name, field in Settings.model_fields.items()
    ]
    assert [n for n in names if f"`{n}`" not in section] == []
