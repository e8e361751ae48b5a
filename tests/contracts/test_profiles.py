"""Every component profile is a drop-in for every other: the same component names, the same owners, the same
topic grants. Only types and connection metadata may differ between profiles; the apps never see which is loaded."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.catalog import EVENTS

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted(p.name for p in (REPO / "components").iterdir() if p.is_dir())
TOPIC_GRANTS = ("allowedTopics", "protectedTopics", "publishingScopes", "subscriptionScopes")
STORE_OWNERS = {
    "users-store": "users",
    "notifications-store": "notifications",
    "inventory-store": "inventory",
    "payments-store": "payments",
    "orders-store": "orders",
    "analytics-store": "analytics",
}


def documents(profile: str) -> dict[str, dict[str, Any]]:
    """(kind/name) -> document, for every YAML document of the profile."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((REPO / "components" / profile).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def metadata(doc: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: str(item.get("value", "")).replace(" ", "") for item in doc["spec"].get("metadata", [])}


@pytest.mark.parametrize("profile", PROFILES)
def test_a_profile_declares_the_same_components_with_the_same_scopes_as_the_default(profile: str) -> None:
    default, this = documents("local"), documents(profile)

    assert sorted(this) == sorted(default)
    for key, doc in this.items():
        assert sorted(doc.get("scopes", [])) == sorted(default[key].get("scopes", [])), key


@pytest.mark.parametrize("profile", PROFILES)
def test_each_state_store_belongs_to_its_owner_alone(profile: str) -> None:
    stores = {
        d["metadata"]["name"]: d
        for d in documents(profile).values()
        if d["kind"] == "Component" and d["spec"]["type"].startswith("state.")
    }

    assert {name: d["scopes"] for name, d in stores.items()} == {name: [owner] for name, owner in STORE_OWNERS.items()}


@pytest.mark.parametrize("profile", PROFILES)
def test_the_topic_grants_are_the_same_in_every_profile_and_cover_every_contract(profile: str) -> None:
    grants = {k: v for k, v in metadata(documents(profile)["Component/pubsub"]).items() if k in TOPIC_GRANTS}
    default = {k: v for k, v in metadata(documents("local")["Component/pubsub"]).items() if k in TOPIC_GRANTS}

    assert grants == default
    assert sorted(grants) == sorted(TOPIC_GRANTS)
    assert {event.TOPIC for event in EVENTS} <= set(grants["allowedTopics"].split(","))
