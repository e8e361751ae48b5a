"""The contracts are the interface other languages build on: their schemas change only on purpose."""

from pathlib import Path

import pytest
import yaml

from contracts.catalog import EVENTS
from contracts.events import Event
from contracts.export import SCHEMA_DIR, render_schemas
from contracts.orders import OrderCompleted
from contracts.users import UserRegistered

REPO = Path(__file__).resolve().parents[2]


def test_committed_schemas_match_the_models() -> None:
    rendered = render_schemas()

    committed = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.json")}

    assert committed == rendered, "a contract changed: run `make schemas` and review the diff"


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.TYPE)
def test_every_event_names_a_versioned_type_and_a_topic(event: type[Event]) -> None:
    assert event.TYPE.startswith("sidecart.")
    assert event.TYPE.rsplit(".", 1)[-1].startswith("v")
    assert event.TOPIC


def test_event_types_are_unique() -> None:
    assert len({event.TYPE for event in EVENTS}) == len(EVENTS)


def test_consumers_ignore_fields_they_do_not_know() -> None:
    event = UserRegistered.model_validate(
        {
            "user_id": "6f1c1f8e-1d7a-4a55-9d43-0b8f2c9a0c11",
            "email": "a@example.com",
            "name": "A",
            "registered_at": "2026-11-22T00:00:00Z",
            "added_in_a_later_version": True,
        }
    )

    assert not hasattr(event, "added_in_a_later_version")


def test_a_fact_id_names_the_business_fact_whatever_publication_carries_it() -> None:
    order_id, user_id = "1234abcd-2b0b-4bb8-9a57-6f0a1d2f9c11", "6f1c1f8e-1d7a-4a55-9d43-0b8f2c9a0c11"
    completed = OrderCompleted(
        order_id=order_id, user_id=user_id, lines=(), total_cents=0, currency="EUR", completed_at="2026-11-22T00:00:00Z"
    )
    registered = UserRegistered(user_id=user_id, email="a@example.com", name="A", registered_at="2026-11-22T00:00:00Z")

    assert completed.fact_id() == f"sidecart.order.completed.v1:{order_id}"
    assert registered.fact_id() == f"sidecart.user.registered.v1:{user_id}"
    # Telemetry's fact is named by its CloudEvent id, which ingest sets to the client's event id.
    assert [event.TYPE for event in EVENTS if not event.FACT_KEY] == ["sidecart.telemetry.event.v1"]
    # Other languages read the rule from the schema.
    assert '"x-fact-key": [\n    "order_id"\n  ]' in render_schemas()["sidecart.order.completed.v1.json"]


PROFILES = sorted(p.name for p in (REPO / "components").iterdir() if p.is_dir())
OUTBOXES = [("statestore-users.yaml", UserRegistered), ("statestore-orders.yaml", OrderCompleted)]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("component_file", "event"), OUTBOXES, ids=[f for f, _ in OUTBOXES])
def test_each_outbox_publishes_on_its_contract_topic(profile: str, component_file: str, event: type[Event]) -> None:
    component = yaml.safe_load((REPO / "components" / profile / component_file).read_text())
    metadata = {item["name"]: item["value"] for item in component["spec"]["metadata"]}

    assert metadata["outboxPublishTopic"] == event.TOPIC
