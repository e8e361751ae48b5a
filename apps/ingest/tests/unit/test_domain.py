"""The telemetry rules: each one on its own, how a batch is read, and the bulk publish entries."""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.telemetry import TelemetryEvent
from ingest.domain import (
    MalformedBatchError,
    TooManyEventsError,
    bulk_publish_entries,
    is_json_media_type,
    judge_events,
    read_batch,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MakeEvent = Callable[..., dict[str, Any]]


def _reason(event: object) -> str:
    judged = judge_events([event], NOW)
    assert judged.accepted == ()
    [rejection] = judged.rejected
    assert rejection.index == 0
    return rejection.reason


@pytest.mark.parametrize("kind", ["page_view", "product_view", "search", "add_to_cart"])
def test_each_type_is_accepted(make_event: MakeEvent, kind: str) -> None:
    judged = judge_events([make_event(type=kind, ts=NOW.isoformat())], NOW)
    assert (len(judged.accepted), judged.rejected) == (1, ())


def test_only_what_needs_it_needs_a_sku(make_event: MakeEvent) -> None:
    for kind in ("page_view", "search"):
        assert judge_events([make_event(type=kind, sku=None, ts=NOW.isoformat())], NOW).rejected == ()


def test_optional_fields_may_be_left_out(make_event: MakeEvent) -> None:
    event = make_event(type="search", user_id=None, sku=None, properties=None, ts=NOW.isoformat())
    [accepted] = judge_events([event], NOW).accepted
    assert (accepted.user_id, accepted.sku, accepted.properties) == (None, None, None)


def test_unknown_fields_are_ignored(make_event: MakeEvent) -> None:
    assert len(judge_events([make_event(ts=NOW.isoformat(), extra="x")], NOW).accepted) == 1


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"id": None}, "id", "Field required"),
        ({"id": "not-a-uuid"}, "id", "valid UUID"),
        ({"type": None}, "type", "Field required"),
        ({"type": "checkout"}, "type", "'page_view'"),
        ({"ts": None}, "ts", "Field required"),
        ({"ts": "yesterday"}, "ts", "valid datetime"),
        ({"ts": "2026-05-01T12:00:00"}, "ts", "timezone"),
        ({"ts": (NOW + timedelta(minutes=5, seconds=1)).isoformat()}, "ts", "future"),
        ({"user_id": "u-1"}, "user_id", "valid UUID"),
        ({"type": "product_view", "sku": None}, "sku", "required when type is 'product_view'"),
        ({"type": "add_to_cart", "sku": None}, "sku", "required when type is 'add_to_cart'"),
        ({"sku": ""}, "sku", "at least 1"),
        ({"sku": "s" * 65}, "sku", "at most 64"),
        ({"sku": "a b"}, "sku", "pattern"),
        ({"sku": "a/../b"}, "sku", "pattern"),
        ({"properties": {f"k{n}": n for n in range(21)}}, "properties", "at most 20"),
        ({"properties": {"k" * 65: 1}}, "properties", "at most 64"),
        ({"properties": {"note": "x" * 257}}, "properties.note", "at most 256"),
        ({"properties": {"tags": ["a"]}}, "properties.tags", "must be a string"),
        ({"properties": {"nested": {"a": 1}}}, "properties.nested", "must be a string"),
        ({"properties": ["a"]}, "properties", "valid dictionary"),
    ],
)
def test_each_rule_rejects_naming_field_and_problem(
    make_event: MakeEvent, overrides: dict[str, Any], field: str, problem: str
) -> None:
    event = make_event(ts=NOW.isoformat())
    event.update(overrides)
    event = {name: value for name, value in event.items() if value is not None}
    reason = _reason(event)
    assert reason.startswith(f"{field}: "), reason
    assert problem in reason, reason


def test_limits_themselves_are_accepted(make_event: MakeEvent) -> None:
    event = make_event(
        ts=(NOW + timedelta(minutes=5)).isoformat(),
        sku="A" * 64,
        properties={**{f"k{n}": n for n in range(18)}, "p" * 64: "v" * 256, "flag": True},
    )
    [accepted] = judge_events([event], NOW).accepted
    assert accepted.properties is not None
    assert len(accepted.properties) == 20


def test_property_values_keep_their_kind(make_event: MakeEvent) -> None:
    properties = {"s": "x", "i": 1, "f": 1.5, "b": True, "n": None}
    [accepted] = judge_events([make_event(ts=NOW.isoformat(), properties=properties)], NOW).accepted
    assert accepted.properties == properties
    assert accepted.properties is not None
    assert accepted.properties["b"] is True


def test_an_event_that_is_not_an_object_is_rejected() -> None:
    assert "valid dictionary" in _reason(["not", "an", "object"])


def test_a_rejection_never_repeats_the_values(make_event: MakeEvent) -> None:
    reason = _reason(make_event(ts=NOW.isoformat(), user_id="secret@example.com"))
    assert "secret" not in reason


def test_each_event_is_judged_on_its_own_with_its_index(make_event: MakeEvent) -> None:
    good = [make_event(ts=NOW.isoformat()), make_event(ts=NOW.isoformat())]
    judged = judge_events([good[0], make_event(sku="bad sku"), good[1], 7], NOW)
    assert [str(event.id) for event in judged.accepted] == [good[0]["id"], good[1]["id"]]
    assert [rejection.index for rejection in judged.rejected] == [1, 3]


def test_duplicate_ids_keep_the_first(make_event: MakeEvent) -> None:
    first = make_event(ts=NOW.isoformat(), sku="first")
    second = make_event(ts=NOW.isoformat(), id=first["id"], sku="second")
    judged = judge_events([first, second, dict(second)], NOW)
    assert [event.sku for event in judged.accepted] == ["first"]
    assert [(rejection.index, rejection.reason) for rejection in judged.rejected] == [
        (1, "id: duplicate of the event at index 0"),
        (2, "id: duplicate of the event at index 0"),
    ]


def test_an_invalid_event_does_not_claim_its_id(make_event: MakeEvent) -> None:
    bad = make_event(sku="bad sku")
    good = make_event(ts=NOW.isoformat(), id=bad["id"])
    judged = judge_events([bad, good], NOW)
    assert (len(judged.accepted), [rejection.index for rejection in judged.rejected]) == (1, [0])


# --- Reading a batch ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'{"events": {}}',
        b'{"events": []}',
        b'{"other": [1]}',
        b'"x"',
        b"[" * 100_000,
        b'{"events": [{"n": NaN}]}',
    ],
)
def test_a_body_that_is_no_batch_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBatchError):
        read_batch(body, 1000)


def test_too_many_events() -> None:
    assert len(read_batch(json.dumps({"events": [{}] * 1000}).encode(), 1000)) == 1000
    with pytest.raises(TooManyEventsError, match="1001 events; at most 1000"):
        read_batch(json.dumps({"events": [{}] * 1001}).encode(), 1000)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("text/plain", False),
        ("application/json-patch+json", False),
        (None, False),
        ("", False),
    ],
)
def test_json_media_type(value: str | None, expected: bool) -> None:
    assert is_json_media_type(value) is expected


def test_bulk_entries_are_cloudevents_keyed_by_event_id(make_event: MakeEvent) -> None:
    event = TelemetryEvent.model_validate(make_event())
    [entry] = bulk_publish_entries([event], "ingest")
    assert entry["entryId"] == str(event.id)
    assert entry["contentType"] == "application/cloudevents+json"
    envelope = entry["event"]
    assert envelope["specversion"] == "1.0"
    assert (envelope["id"], envelope["type"], envelope["source"]) == (
        str(event.id),
        "sidecart.telemetry.event.v1",
        "ingest",
    )
    assert envelope["datacontenttype"] == "application/json"
    assert TelemetryEvent.model_validate(envelope["data"]) == event
    assert uuid.UUID(envelope["data"]["id"]) == event.id
