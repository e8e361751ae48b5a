"""Each app runs beside a real daprd of the pinned release, with exactly the components scoped to it."""

import re
from pathlib import Path

import pytest
import yaml

from devstack import kafka
from devstack.platform_run import Platform

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

# The same component names in every profile (the apps depend on them); only their types differ.
EXPECTED_COMPONENTS = {
    "gateway": {"secretstore"},
    "users": {"users-store", "pubsub", "secretstore"},
    "notifications": {"notifications-store", "pubsub"},
    "inventory": {"inventory-store"},
    "payments": {"payments-store", "pubsub"},
    "orders": {"orders-store", "pubsub"},
    "ingest": {"pubsub"},
    "analytics": {"analytics-store", "pubsub"},
}


def declared_types(profile: str) -> dict[str, str]:
    """Component name -> type, as the profile's YAML declares them."""
    documents = [yaml.safe_load(f.read_text()) for f in sorted((REPO / "components" / profile).glob("*.yaml"))]
    return {d["metadata"]["name"]: d["spec"]["type"] for d in documents if d["kind"] == "Component"}


def pinned_runtime_version() -> str:
    go_mod = (REPO / "deploy" / "runtime" / "go.mod").read_text()
    match = re.search(r"github\.com/dapr/dapr v(\S+)", go_mod)
    assert match, "deploy/runtime/go.mod pins no dapr release"
    return match.group(1)


@pytest.mark.parametrize("app_id", sorted(EXPECTED_COMPONENTS))
def test_sidecar_is_the_pinned_daprd_with_its_own_components(platform: Platform, profile: str, app_id: str) -> None:
    metadata = platform.sidecar_metadata(app_id)

    assert metadata["id"] == app_id
    assert metadata["runtimeVersion"] == pinned_runtime_version()
    types = declared_types(profile)
    loaded = {(c["name"], c["type"]) for c in metadata.get("components", [])}
    assert loaded == {(name, types[name]) for name in EXPECTED_COMPONENTS[app_id]}
    assert metadata["appConnectionProperties"]["port"] == platform.run_file.app(app_id).app_port


def test_users_store_is_outbox_enabled_and_transactional(platform: Platform) -> None:
    metadata = platform.sidecar_metadata("users")

    store = next(c for c in metadata["components"] if c["name"] == "users-store")
    assert {"ETAG", "TRANSACTIONAL"} <= set(store["capabilities"])


def test_on_kafka_a_stale_outbox_message_holds_back_one_partition_of_many(platform: Platform, profile: str) -> None:
    if profile != "kafka":
        pytest.skip("partitions are Kafka's")
    topics = kafka.outbox_topics(platform.layout)

    assert sorted(topics) == ["defaultordersordersoutbox", "defaultusersusersoutbox"]
    assert kafka.partition_counts([*topics, "users"]) == {
        **dict.fromkeys(topics, kafka.OUTBOX_PARTITIONS),
        "users": kafka.NUM_PARTITIONS,
    }


def test_notifications_subscribes_to_user_events_by_type(platform: Platform) -> None:
    metadata = platform.sidecar_metadata("notifications")

    subscription = next(s for s in metadata.get("subscriptions", []) if s["topic"] == "users")
    assert subscription["pubsubname"] == "pubsub"
    matches = [rule.get("match", "") for rule in subscription["rules"]]
    assert any("sidecart.user.registered.v1" in match for match in matches)


def test_the_orders_sidecar_runs_the_workflow_engine(platform: Platform) -> None:
    metadata = platform.sidecar_metadata("orders")

    assert metadata["actorRuntime"]["runtimeStatus"] == "RUNNING", metadata["actorRuntime"]
    assert metadata["actorRuntime"]["placement"] == "placement: connected"
