"""The catalogue is the one declaration of who owns, publishes, reads and calls what: what is generated from it is
committed as generated, and what is written by hand agrees with it."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.catalogue import Catalogue, Operation, app_configuration, dapr_operations, generate, generated_files
from devstack.layout import Layout
from devstack.profiles import available_profiles
from devstack.zipkin import DEFAULT_PORT as ZIPKIN_DEFAULT_PORT
from devstack.zipkin import spans_endpoint

LAYOUT = Layout.discover()
CATALOGUE = Catalogue.load(LAYOUT)


def test_every_generated_file_is_committed_as_generated() -> None:
    stale = [
        str(path.relative_to(LAYOUT.repo))
        for path, text in generated_files(LAYOUT).items()
        if not path.exists() or path.read_text() != text
    ]
    assert stale == [], "run `make generate` and commit the result"


def test_generate_is_idempotent_and_undoes_a_hand_edit(tmp_path: Path) -> None:
    copy_of_repo = Layout(tmp_path)
    for path in ("deploy/catalogue.yaml", "deploy/dapr/config.yaml"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text((LAYOUT.repo / path).read_text())
    assert len(generate(copy_of_repo)) == len(generated_files(LAYOUT))
    assert generate(copy_of_repo) == []

    config = tmp_path / "deploy" / "dapr" / "apps" / "inventory.yaml"
    config.write_text(config.read_text().replace("defaultAction: deny", "defaultAction: allow"))
    assert generate(copy_of_repo) == [config]
    assert "defaultAction: allow" not in config.read_text()


def test_the_run_file_gives_every_app_its_own_configuration() -> None:
    run_file = yaml.safe_load(LAYOUT.run_file.read_text())
    assert [app["appID"] for app in run_file["apps"]] == list(CATALOGUE.apps)
    for app in run_file["apps"]:
        assert app["configFilePath"] == f"./deploy/dapr/apps/{app['appID']}.yaml"
    assert run_file["common"]["apiListenAddresses"] == "127.0.0.1"


def _policies(app_id: str) -> dict[str, dict[str, set[str]]]:
    base = yaml.safe_load((LAYOUT.repo / "deploy" / "dapr" / "config.yaml").read_text())
    spec = app_configuration(CATALOGUE, CATALOGUE.apps[app_id], base)["spec"]
    assert spec["accessControl"]["defaultAction"] == "deny"
    return {
        policy["appId"]: {op["name"]: set(op["httpVerb"]) for op in policy["operations"]}
        for policy in spec["accessControl"]["policies"]
    }


def test_only_the_gateway_and_orders_may_call_anything() -> None:
    callers = {caller for app_id in CATALOGUE.apps for caller in _policies(app_id)}
    assert callers == {"gateway", "orders"}
    assert _policies("gateway") == {}  # nobody calls the public app through Dapr
    assert set(_policies("inventory")) == {"gateway", "orders"}
    assert "/admin" not in str(_policies("inventory"))


def test_a_path_under_a_declared_path_is_folded_into_it_as_dapr_matches_it() -> None:
    declared = (
        Operation("POST", "/users"),
        Operation("GET", "/users/*"),
        Operation("GET", "/products/*"),
        Operation("POST", "/orders/**"),
        Operation("GET", "/orders/**/x"),
    )
    assert dapr_operations(declared) == {
        "/users": {"GET", "POST"},
        "/products/*": {"GET"},
        "/orders/**": {"POST"},
        "/orders/**/x": {"GET"},
    }


def test_only_the_apps_granted_a_secret_may_read_it() -> None:
    base = yaml.safe_load((LAYOUT.repo / "deploy" / "dapr" / "config.yaml").read_text())
    readable = {
        app_id: app_configuration(CATALOGUE, app, copy.deepcopy(base))["spec"]["secrets"]["scopes"][0]["allowedSecrets"]
        for app_id, app in CATALOGUE.apps.items()
    }
    assert {app: secrets for app, secrets in readable.items() if secrets} == {
        "users": ["jwt-signing-key", "jwt-next-signing-key", "jwt-previous-signing-key"],
        "gateway": ["ingest-api-keys"],
    }


def _components(profile: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in LAYOUT.components(profile).glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        if document.get("kind") == "Component":
            found[document["metadata"]["name"]] = document
    return found


def _metadata(component: dict[str, Any], name: str) -> str:
    return " ".join(next(str(m["value"]) for m in component["spec"]["metadata"] if m["name"] == name).split())


def _scopes(value: str) -> dict[str, set[str]]:
    return {
        app: set(topics.split(",")) for app, topics in (part.split("=") for part in value.replace(" ", "").split(";"))
    }


@pytest.mark.parametrize("profile", available_profiles(LAYOUT))
def test_each_profiles_topic_grants_and_scopes_are_the_catalogues(profile: str) -> None:
    components = _components(profile)
    pubsub = components["pubsub"]
    topics = set(CATALOGUE.topics())
    assert set(_metadata(pubsub, "allowedTopics").replace(" ", "").split(",")) == topics
    assert set(_metadata(pubsub, "protectedTopics").replace(" ", "").split(",")) == topics
    assert _scopes(_metadata(pubsub, "publishingScopes")) == {
        app: set(granted) for app, granted in CATALOGUE.publishing_scopes().items()
    }
    assert _scopes(_metadata(pubsub, "subscriptionScopes")) == {
        app: set(granted) for app, granted in CATALOGUE.subscription_scopes().items()
    }
    assert set(pubsub["scopes"]) == set(CATALOGUE.pubsub_apps())
    assert set(components["secretstore"]["scopes"]) == set(CATALOGUE.secret_readers())
    for app in CATALOGUE.apps.values():
        if app.state_store:
            assert components[app.state_store]["scopes"] == [app.app_id]
    stores = {name for name, c in components.items() if str(c["spec"]["type"]).startswith("state.")}
    assert stores == {app.state_store for app in CATALOGUE.apps.values() if app.state_store}


def test_every_sidecar_and_app_sends_its_spans_to_the_zipkin_devstack_starts() -> None:
    endpoint = spans_endpoint(ZIPKIN_DEFAULT_PORT)
    run_file = yaml.safe_load(LAYOUT.run_file.read_text())
    assert run_file["common"]["env"]["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == endpoint
    for app in run_file["apps"]:
        assert "OTEL_EXPORTER_ZIPKIN_ENDPOINT" not in app.get("env", {})
        configuration = yaml.safe_load((LAYOUT.repo / app["configFilePath"]).read_text())
        assert configuration["spec"]["tracing"] == {"samplingRate": "1", "zipkin": {"endpointAddress": endpoint}}
