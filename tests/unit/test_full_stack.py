"""The full stack's files agree with each other and with the settings: docker-compose.yml, the
Prometheus config, Grafana's provisioning and the ACCI dashboard (parsed; no Docker engine)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from acci.workers.http_endpoint import readiness_limit
from acci.workers.settings import Settings
from acci.workflows.command import SEARCH_ATTRIBUTES
from tests.stack_files import (
    COMPOSE_FILE,
    DASHBOARD,
    ENV_EXAMPLE,
    GRAFANA,
    PROMETHEUS_CONFIG,
    PROMETHEUS_SERIES,
    ROOT,
    container_ports,
    dashboard,
    env_file,
    environment,
    expressions,
    host_path,
    load_yaml,
    metric_names,
    mounts,
    only_variables,
    panels,
    promtool,
    published,
    services,
    variables,
    with_placeholders,
)


def default(name: str) -> Any:
    field = Settings.model_fields.get(name)
    assert field is not None, f"Settings has no {name}"
    return field.default


def test_every_service_runs_a_pinned_image_or_this_repository() -> None:
    for name, service in services().items():
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists(), name
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"


def test_temporal_runs_from_the_server_image_with_its_schema_set_up_first() -> None:
    found = services()
    images = {name: s.get("image", "") for name, s in found.items()}
    assert not [i for i in images.values() if "auto-setup" in i]
    server, schema = found["temporal"], found["temporal-schema"]
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    # The job brings the schema to its own version: the server must be the same one.
    assert images["temporal-schema"].split(":")[1] == images["temporal"].split(":")[1]
    assert images["temporal-setup"] == images["temporal-schema"]
    depends = server["depends_on"]["temporal-schema"]
    assert depends["condition"] == "service_completed_successfully"
    env, job = server["environment"], schema["environment"]
    assert env["DB"] == "postgres12"
    for key in ("POSTGRES_SEEDS", "DB_PORT", "POSTGRES_USER", "DBNAME", "VISIBILITY_DBNAME"):
        assert env[key] == job[key], key
    assert env["POSTGRES_SEEDS"] in found and env["DB_PORT"] == "5432"
    assert schema["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The server image ships no dynamic config: the file it is pointed at is ours.
    config = host_path(server, env["DYNAMIC_CONFIG_FILE_PATH"])
    assert config is not None and config.is_file()
    assert isinstance(load_yaml(config), dict)


def test_the_setup_jobs_scripts_are_mounted_and_parse() -> None:
    found = services()
    for name in ("temporal-schema", "temporal-setup"):
        service = found[name]
        script = host_path(service, service["command"][0])
        assert script is not None and script.is_file(), name
        subprocess.run(["sh", "-n", str(script)], check=True)
        assert all(mount.exists() for mount in mounts(service).values())


def test_the_setup_job_creates_the_namespace_and_search_attributes_the_worker_uses() -> None:
    found = services()
    setup, worker = found["temporal-setup"], found["acci-worker"]
    assert setup["command"][1:] == [a.name for a in SEARCH_ATTRIBUTES]
    namespace = setup["environment"]["TEMPORAL_NAMESPACE"]
    assert namespace == default("temporal_namespace")
    assert worker["environment"]["ACCI_TEMPORAL_NAMESPACE"] == namespace
    assert setup["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert (
        setup["environment"]["TEMPORAL_ADDRESS"] == worker["environment"]["ACCI_TEMPORAL_ADDRESS"]
    )


def test_published_ports_are_where_the_settings_defaults_look() -> None:
    found = services()
    host, port = default("temporal_address").rsplit(":", 1)
    assert f"{host}:{port}:7233" in published(found["temporal"])
    assert found["acci-worker"]["environment"]["ACCI_TEMPORAL_ADDRESS"] == "temporal:7233"
    ui = default("temporal_ui_port")
    assert f"127.0.0.1:{ui}:{ui}" in published(found["temporal-ui"])
    assert found["temporal-ui"]["environment"]["TEMPORAL_UI_PORT"] == str(ui)


def test_the_worker_serves_its_metrics_to_prometheus_and_the_host() -> None:
    worker = services()["acci-worker"]
    env = worker["environment"]
    metrics, sdk = default("metrics_port"), default("temporal_metrics_port")
    assert env["ACCI_METRICS_HOST"] == "0.0.0.0"
    assert (int(env["ACCI_METRICS_PORT"]), int(env["ACCI_TEMPORAL_METRICS_PORT"])) == (
        metrics,
        sdk,
    )
    for port in (metrics, sdk):
        assert f"127.0.0.1:{port}:{port}" in published(worker)


def test_the_worker_healthcheck_asks_its_readiness_endpoint() -> None:
    worker = services()["acci-worker"]
    check = " ".join(worker["healthcheck"]["test"])
    assert f"http://127.0.0.1:{default('metrics_port')}/readyz" in check
    assert check.startswith("CMD python -c ")
    # The probe outwaits /readyz, which answers (503, with the reason) within its own bound
    # when a service hangs: a probe that gave up first would say nothing of why.
    probe = float(check.rsplit("timeout=", 1)[1].split(")")[0])
    limit = readiness_limit(Settings())
    assert limit < probe < _seconds(worker["healthcheck"]["timeout"])


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def _scrape_targets(config: dict[str, Any]) -> dict[str, set[tuple[str, int]]]:
    jobs: dict[str, set[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        targets = jobs.setdefault(job["job_name"], set())
        for sd in job.get("dns_sd_configs", []):
            targets.update((name, int(sd["port"])) for name in sd["names"])
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port)))
    return jobs


def test_prometheus_scrapes_both_worker_ports_by_service_name() -> None:
    found = services()
    prometheus = found["prometheus"]
    assert host_path(prometheus, "/etc/prometheus/prometheus.yml") == PROMETHEUS_CONFIG
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    jobs = _scrape_targets(load_yaml(PROMETHEUS_CONFIG))
    worker_ports = container_ports(found["acci-worker"])
    scraped = {port for targets in jobs.values() for host, port in targets if host == "acci-worker"}
    assert scraped == {default("metrics_port"), default("temporal_metrics_port")}
    for job, targets in jobs.items():
        for host, port in targets:
            if host == "localhost":  # Prometheus itself
                assert port in container_ports(prometheus), job
                continue
            assert host in found, f"{job}: {host} is no compose service"
            assert port in container_ports(found[host]), f"{job}: {host}:{port}"
    assert scraped <= worker_ports


def test_promtool_accepts_the_prometheus_config() -> None:
    subprocess.run([promtool(), "check", "config", str(PROMETHEUS_CONFIG)], check=True)


def _provisioned(kind: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted((GRAFANA / "provisioning" / kind).glob("*.yml")):
        found.extend(load_yaml(path)[kind if kind == "datasources" else "providers"])
    return found


def test_grafana_reads_the_compose_prometheus_and_loads_the_acci_dashboard() -> None:
    found = services()
    grafana = found["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning") == GRAFANA / "provisioning"
    [source] = _provisioned("datasources")
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus"
    assert url.hostname == "prometheus" and url.port in container_ports(found["prometheus"])
    [provider] = _provisioned("dashboards")
    assert host_path(grafana, provider["options"]["path"]) == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == DASHBOARD
    # Every panel asks the provisioned data source, by its uid.
    for panel in panels(dashboard()):
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])


def test_the_worker_sends_traces_to_jaeger_over_otlp() -> None:
    found = services()
    env = found["acci-worker"]["environment"]
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "jaeger" and endpoint.port == 4318  # OTLP/HTTP
    assert env["OTEL_SERVICE_NAME"] == "acci-worker"
    assert env["ACCI_TRACING"] == "otlp"
    jaeger = found["jaeger"]
    assert {4317, 4318, 16686} <= container_ports(jaeger)
    assert found["acci-worker"]["depends_on"]["jaeger"]


def test_every_dashboard_panel_has_a_query_and_ids_and_positions_are_distinct() -> None:
    board = dashboard()
    shown = list(panels(board))
    assert all(p.get("targets") for p in shown)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    spots = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]]
    assert len(spots) == len(set(spots))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])


# What an operator needs on the one dashboard (issue 13 §6); tests/workflows checks the names
# against a live worker's /metrics.
REQUIRED = {
    "command rate and failures": "acci_commands_total",
    "command latency": "acci_command_seconds_bucket",
    "append latency": "acci_append_seconds_bucket",
    "publish latency": "acci_publish_seconds_bucket",
    "query latency": "acci_query_seconds_bucket",
    "projection lag": "acci_projection_lag_events",
    "projection state": "acci_projection_state",
    "cache hit ratio": "acci_cache_shared_hit_ratio",
    "gap-free horizon": "acci_event_horizon_lag_events",
    "backups": "acci_backup_last_success_timestamp_seconds",
    "workflow task latency": "temporal_workflow_task_schedule_to_start_latency_bucket",
    "command step failures": "temporal_local_activity_execution_failed_total",
}


def test_the_dashboard_shows_what_an_operator_needs_and_only_acci_and_sdk_metrics() -> None:
    names = {n for _, expr in expressions(dashboard()) for n in metric_names(expr)}
    missing = {topic: name for topic, name in REQUIRED.items() if name not in names}
    assert not missing
    strangers = {
        n for n in names if not n.startswith(("acci_", "temporal_")) and n not in PROMETHEUS_SERIES
    }
    assert not strangers


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (le) (rate(a_seconds_bucket{x="rate(b)"}[$__rate_interval]))',
            {"a_seconds_bucket"},
        ),
        ("time() - max by (scope) (acci_backup_x)", {"acci_backup_x"}),
        ("a / on(job) group_left(instance) b offset 5m", {"a", "b"}),
        ('up{job=~"a|b"} == 1 and ignoring (x) c', {"up", "c"}),
        ("histogram_quantile(0.95, sum without (pod) (rate(h_bucket[5m])))", {"h_bucket"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_the_worker_image_exposes_both_metrics_ports() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [expose] = [line.split()[1:] for line in dockerfile.splitlines() if line.startswith("EXPOSE")]
    assert {default("metrics_port"), default("temporal_metrics_port")} <= set(map(int, expose))


# Secrets and exposure (issue 14 §6): parsed from the files, as the rest of this module.

# Environment variables that hold a password, a token or a key (ACCI_MASTER_KEY_ID does not).
_SECRET_NAME = re.compile(r"(PASS|PASSWORD|PWD|SECRET|TOKEN|_KEY|_KEYS)$")
_URL_USERINFO = re.compile(r"://([^/@\s]*)@")


def test_no_service_trusts_a_connection_without_its_password() -> None:
    assert not re.search(r"\btrust\b", COMPOSE_FILE.read_text().lower())
    for script in (ROOT / "ops").rglob("*"):
        if script.is_file() and script.suffix in {".sh", ".conf", ".sql", ".yml", ".yaml"}:
            assert not re.search(r"\btrust\b", script.read_text().lower()), script
    env = environment(services()["postgres"])
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert set(env["POSTGRES_INITDB_ARGS"].split()) >= {
        "--auth-host=scram-sha-256",
        "--auth-local=scram-sha-256",
    }


def test_every_published_port_is_on_localhost_only() -> None:
    for name, service in services().items():
        assert service.get("network_mode") != "host", name
        for port in published(service):
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+(/(tcp|udp))?", port), f"{name}: {port}"


def test_every_password_token_and_key_comes_from_the_env_file() -> None:
    for name, service in services().items():
        for key, value in environment(service).items():
            if _SECRET_NAME.search(key):
                assert only_variables(value), f"{name}: {key} is not a ${{VARIABLE}}"
            for userinfo in _URL_USERINFO.findall(value):
                _, has_password, password = userinfo.partition(":")
                if has_password:
                    assert only_variables(password), f"{name}: {key} has a literal password"
        for argument in map(str, service.get("command", [])):
            assert "--requirepass" not in argument or "$$REDIS_PASSWORD" in argument, name


def test_the_env_file_is_ignored_and_its_example_names_every_variable_with_placeholders() -> None:
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".env"], check=False)
    assert ignored.returncode == 0, ".env must be in .gitignore"
    example = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", ".env.example"], check=False
    )
    assert example.returncode == 1, ".env.example must be committed"
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    names = env_file(ENV_EXAMPLE)
    assert set(names) == variables(COMPOSE_FILE.read_text())
    for name, value in names.items():
        if _SECRET_NAME.search(name):
            assert value == "" or value.startswith("change-me"), f"{name} is no placeholder"


def test_the_app_role_logs_in_with_its_own_password_set_by_the_init_script() -> None:
    found = services()
    postgres, worker = found["postgres"], found["acci-worker"]
    script = host_path(postgres, "/docker-entrypoint-initdb.d/10-acci-app-role.sh")
    assert script is not None and script.is_file()
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    assert "ALTER ROLE acci_app PASSWORD :'app_password'" in text
    assert "NOBYPASSRLS" in text and "ACCI_APP_DB_PASSWORD" in text
    assert variables(environment(postgres)["ACCI_APP_DB_PASSWORD"]) == {"ACCI_APP_DB_PASSWORD"}
    migration = ROOT / "eventstore" / "migrations" / "012_row_level_security.sql"
    assert "CREATE ROLE acci_app" in migration.read_text()
    app_url = urlsplit(with_placeholders(environment(worker)["ACCI_APP_DATABASE_URL"]))
    assert (app_url.username, app_url.hostname) == ("acci_app", "postgres")
    assert variables(environment(worker)["ACCI_APP_DATABASE_URL"]) == {"ACCI_APP_DB_PASSWORD"}


def test_the_web_ui_can_decode_payloads_through_the_codec_endpoint() -> None:
    found = services()
    codec, ui, worker = found["acci-codec"], found["temporal-ui"], found["acci-worker"]
    assert codec["command"][0] == "codec-server"
    port = default("codec_server_port")
    assert codec["command"][-2:] == ["--port", str(port)]
    assert f"127.0.0.1:{port}:{port}" in published(codec)
    ui_port = ui["environment"]["TEMPORAL_UI_PORT"]
    origins = json.loads(environment(codec)["ACCI_CODEC_CORS_ORIGINS"])
    assert f"http://127.0.0.1:{ui_port}" in origins and f"http://localhost:{ui_port}" in origins
    assert only_variables(environment(ui)["TEMPORAL_CODEC_ENDPOINT"])
    # The codec endpoint decodes with the worker's keys.
    for key in ("ACCI_MASTER_KEY", "ACCI_MASTER_KEY_ID", "ACCI_PREVIOUS_MASTER_KEYS"):
        assert environment(codec)[key] == environment(worker)[key], key


def test_a_local_acci_gets_the_compose_services_urls_with_their_passwords_from_the_env_file(
    tmp_path: Path,
) -> None:
    example = env_file(ENV_EXAMPLE)
    filled = tmp_path / ".env"
    filled.write_text(ENV_EXAMPLE.read_text().replace("ACCI_MASTER_KEY=\n", "ACCI_MASTER_KEY=k\n"))
    out = subprocess.run(
        ["sh", str(ROOT / "ops" / "compose-env.sh"), str(filled)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    exported = dict(re.findall(r"^export (\w+)='([^']*)'$", out, re.MULTILINE))
    assert len(exported) == len(out.splitlines())
    worker = environment(services()["acci-worker"])
    # Every URL and key the compose worker is given, pointed at the published ports instead.
    assert {k for k in worker if k.endswith("_URL") or "KEY" in k} - set(exported) == {
        "ACCI_PREVIOUS_MASTER_KEYS"  # empty in the example: left unset
    }
    assert exported["ACCI_MASTER_KEY"] == "k"
    assert "ACCI_CODEC_AUTH_TOKEN" not in exported  # empty: not exported as ""
    settings = Settings(**{k.removeprefix("ACCI_").lower(): v for k, v in exported.items()})
    assert settings.redis_url.get_secret_value() == (
        f"redis://:{example['REDIS_PASSWORD']}@127.0.0.1:6379/0"
    )
    for url in (settings.database_url, settings.app_database_url):
        assert url is not None
        parts = urlsplit(url.get_secret_value())
        assert (parts.hostname, parts.port) == ("127.0.0.1", 5432)
        assert parts.password in (example["POSTGRES_PASSWORD"], example["ACCI_APP_DB_PASSWORD"])
    amqp = urlsplit(settings.rabbitmq_url.get_secret_value())
    assert (amqp.username, amqp.password) == (
        example["RABBITMQ_USER"],
        example["RABBITMQ_PASSWORD"],
    )
