"""Database per service and topic ownership, enforced by the sidecars, not by the apps' good manners.

Each state store is scoped to its owner, so no other app's sidecar even loads it; the pubsub's topic scopes refuse a
publish to a topic the app does not own. Asked straight at each sidecar, as a misbehaving app would.
"""

import httpx
import pytest

from devstack.platform_run import Platform

pytestmark = pytest.mark.e2e

STORE_OF = {
    "users": "users-store",
    "notifications": "notifications-store",
    "inventory": "inventory-store",
    "payments": "payments-store",
    "orders": "orders-store",
    "analytics": "analytics-store",
}
APPS = ["gateway", "users", "notifications", "inventory", "payments", "orders", "ingest", "analytics"]


@pytest.mark.parametrize("app_id", APPS)
def test_an_app_reaches_its_own_store_and_no_other(platform: Platform, app_id: str) -> None:
    with platform.sidecar_client(app_id, timeout=5) as sidecar:
        if app_id in STORE_OF:
            own = sidecar.get(f"/v1.0/state/{STORE_OF[app_id]}/access-control-probe")
            assert own.status_code == 204, own.text  # a key nobody wrote: found the store, no value
        for owner, store in STORE_OF.items():
            if owner == app_id:
                continue
            foreign = sidecar.get(f"/v1.0/state/{store}/access-control-probe")
            # A sidecar with stores of its own says "not found"; one with none at all, "not configured".
            expected = (
                (400, "ERR_STATE_STORE_NOT_FOUND") if app_id in STORE_OF else (500, "ERR_STATE_STORE_NOT_CONFIGURED")
            )
            assert (foreign.status_code, foreign.json()["errorCode"]) == expected, (store, foreign.text)


# (app, topic it must not publish): other apps' event topics, and a topic that is not declared at all.
FORBIDDEN_PUBLISHES = [
    ("ingest", "orders"),
    ("notifications", "users"),
    ("payments", "orders"),
    ("orders", "users"),
    ("users", "telemetry"),
    ("analytics", "orders"),
    ("ingest", "not-a-declared-topic"),
]


@pytest.mark.parametrize(("app_id", "topic"), FORBIDDEN_PUBLISHES)
def test_an_app_cannot_publish_to_a_topic_it_does_not_own(platform: Platform, app_id: str, topic: str) -> None:
    event = {"specversion": "1.0", "id": "access-control-probe", "source": "e2e", "type": "probe", "data": {}}
    response = httpx.post(
        f"{platform.sidecar_url(app_id)}/v1.0/publish/pubsub/{topic}",
        json=event,
        headers={"content-type": "application/cloudevents+json", **platform.sidecar_headers(app_id)},
        timeout=5,
    )
    assert response.status_code == 403, response.text
    assert response.json()["errorCode"] == "ERR_PUBSUB_FORBIDDEN", response.text


def test_the_topic_scopes_grant_every_subscription_the_apps_declare(platform: Platform) -> None:
    granted = {
        "notifications": {"users", "orders"},
        "payments": {"users"},
        "analytics": {"telemetry", "telemetry-deadletter", "orders", "users"},
    }
    for app_id, topics in granted.items():
        metadata = platform.sidecar_metadata(app_id)
        subscribed = {s["topic"] for s in metadata.get("subscriptions", []) if s["pubsubname"] == "pubsub"}
        assert subscribed == topics, (app_id, subscribed)
