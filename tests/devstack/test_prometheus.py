"""Prometheus' side of the dev stack, without starting it: the alerting rules pass promtool (checked and unit-tested),
the generated config passes promtool, and every app and sidecar of dapr.yaml is a scrape target on loopback."""

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devstack import prometheus
from devstack.layout import Layout
from devstack.prometheus import Target, config, forget_stale_targets, platform_targets, write_targets

LAYOUT = Layout.discover()
RULES = LAYOUT.repo / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> Path:
    """Debian's promtool, from the dev stack's install (downloaded and unpacked once, ~30 MB, if missing)."""
    prometheus.install(LAYOUT)
    return prometheus.binary("promtool")


def run(argv: list[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603 (our promtool)


def test_the_alerting_rules_pass_promtool_check(promtool: Path) -> None:
    checked = run([promtool, "check", "rules", RULES / "alerts.yml"])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_when_it_should_and_only_then(promtool: Path) -> None:
    tested = run([promtool, "test", "rules", "alerts_test.yml"], cwd=RULES)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_unit_tested() -> None:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts - fired == set()


def test_the_generated_config_passes_promtool_check(promtool: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(LAYOUT)))
    checked = run([promtool, "check", "config", config_file])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _groups_by_job(run_file: Path) -> dict[str, dict[str, str]]:
    """{job: {app_id: address}} of the target groups generated from `run_file`."""
    found: dict[str, dict[str, str]] = {}
    for group in (target.group() for target in platform_targets(run_file)):
        (address,) = group["targets"]
        labels = group["labels"]
        found.setdefault(labels["job"], {})[labels.get("app_id", labels.get("server"))] = address
    return found


def test_every_app_and_every_sidecar_of_dapr_yaml_is_scraped_on_loopback() -> None:
    apps = yaml.safe_load(LAYOUT.run_file.read_text())["apps"]
    targets = _groups_by_job(LAYOUT.run_file)

    assert set(targets["app"]) == {app["appID"] for app in apps}
    assert targets["sidecar"] == {app["appID"]: f"127.0.0.1:{app['metricsPort']}" for app in apps}
    for app in apps:
        if app["appID"] != "gateway":
            assert targets["app"][app["appID"]] == f"127.0.0.1:{app['appPort']}"
    # The gateway serves /metrics only on its own port, from its settings, not on its public one.
    assert targets["app"]["gateway"] == "127.0.0.1:9280"
    assert {"placement", "scheduler"} <= set(targets["server"])
    addresses = [address for by_id in targets.values() for address in by_id.values()]
    assert all(address.startswith("127.0.0.1:") for address in addresses)


def test_an_app_added_to_the_run_file_is_scraped_and_a_metrics_port_in_its_env_is_followed(tmp_path: Path) -> None:
    run_file = yaml.safe_load(LAYOUT.run_file.read_text())
    gateway = next(app for app in run_file["apps"] if app["appID"] == "gateway")
    gateway.setdefault("env", {})["GATEWAY_METRICS_PORT"] = "9299"
    reviews = {"appID": "reviews", "appPort": 8199, "daprHTTPPort": 3599, "daprGRPCPort": 50099, "metricsPort": 9199}
    run_file["apps"].append(reviews)
    path = tmp_path / "dapr.yaml"
    path.write_text(yaml.safe_dump(run_file))

    targets = _groups_by_job(path)

    assert targets["app"]["reviews"] == "127.0.0.1:8199"
    assert targets["sidecar"]["reviews"] == "127.0.0.1:9199"
    assert targets["app"]["gateway"] == "127.0.0.1:9299"


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_target_files_of_exporters_that_no_longer_run_are_forgotten(tmp_path: Path, listening_port: int) -> None:
    layout = Layout(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    own = write_targets(layout, "platform", [Target(closed_port, {"job": "app", "app_id": "users"})])
    running = write_targets(layout, "redis", [Target(listening_port, {"job": "server", "server": "redis"})])
    stale = write_targets(layout, "postgres", [Target(closed_port, {"job": "server", "server": "postgres"})])

    forget_stale_targets(layout, keep={own})

    assert (own.exists(), running.exists(), stale.exists()) == (True, True, False)
    assert json.loads(running.read_text()) == [
        {
            "targets": [f"127.0.0.1:{listening_port}"],
            "labels": {"job": "server", "server": "redis", "__metrics_path__": "/metrics"},
        }
    ]
