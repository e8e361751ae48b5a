"""Ingest's rules: how a batch is read, how each event is judged on its own, and how the valid ones are enveloped.

Plain Python: no FastAPI, no Dapr.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from contracts.telemetry import EventRejection, TelemetryEvent

JSON_MEDIA_TYPE = "application/json"
CLOUDEVENT_MEDIA_TYPE = "application/cloudevents+json"
# At most this many problems are named per rejected event; the first ones are what a client fixes first.
_MAX_PROBLEMS_PER_EVENT = 3


class MalformedBatchError(ValueError):
    """The body is not a batch at all (not JSON, no `events` list, no events): 422, nothing is judged."""


class TooManyEventsError(ValueError):
    """The batch holds more events than one request may carry: 413, nothing is judged."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"the batch holds {count} events; at most {limit} are accepted per request")


@dataclass(frozen=True)
class JudgedBatch:
    """The events of a batch that passed, in order, and each one refused with why."""

    accepted: tuple[TelemetryEvent, ...]
    rejected: tuple[EventRejection, ...]


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a Content-Type header names JSON (parameters such as charset are allowed)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == JSON_MEDIA_TYPE


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_batch(body: bytes, max_events: int) -> list[Any]:
    """The raw events of a `{"events": [...]}` body; raises MalformedBatchError or TooManyEventsError."""
    try:
        # NaN and Infinity are accepted by Python's parser but are not JSON, and nothing downstream could read them.
        document: Any = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise MalformedBatchError("the body is not valid JSON") from exc
    if not isinstance(document, dict) or "events" not in document:
        raise MalformedBatchError("the body must be an object with an 'events' list")
    events = document["events"]
    if not isinstance(events, list):
        raise MalformedBatchError("'events' must be a list")
    if not events:
        raise MalformedBatchError("'events' holds no events")
    if len(events) > max_events:
        raise TooManyEventsError(len(events), max_events)
    return events


def judge_events(raw_events: Sequence[Any], now: datetime) -> JudgedBatch:
    """Validates every event on its own; one bad event never rejects the batch.

    An id seen earlier in the same batch is refused: the first event with it is the one kept.
    """
    accepted: list[TelemetryEvent] = []
    rejected: list[EventRejection] = []
    seen: dict[Any, int] = {}
    for index, raw in enumerate(raw_events):
        try:
            event = TelemetryEvent.model_validate(raw, context={"now": now})
        except ValidationError as exc:
            rejected.append(EventRejection(index=index, reason=rejection_reason(exc)))
            continue
        first = seen.setdefault(event.id, index)
        if first != index:
            rejected.append(EventRejection(index=index, reason=f"id: duplicate of the event at index {first}"))
            continue
        accepted.append(event)
    return JudgedBatch(tuple(accepted), tuple(rejected))


def _field_and_problem(error: Any) -> tuple[str, str]:
    location = tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    if location[:1] == ("properties",) and len(location) >= 2:
        if location[-1] == "[key]":
            # The key itself is not repeated: it is the client's text and may be long or personal.
            return "properties", f"a key is invalid ({message[0].lower()}{message[1:]})"
        if len(location) >= 3:
            if error.get("type") == "string_too_long":
                return f"properties.{location[1]}", message
            # A value that fits none of the allowed kinds fails every member of the union: say it once.
            return (
                f"properties.{location[1]}",
                "must be a string (at most 256 characters), a number, true/false or null",
            )
    if not location:
        field, _, problem = message.partition(": ")
        return (field, problem) if problem else ("<event>", message)
    return ".".join(str(part) for part in location), message


def rejection_reason(exc: ValidationError) -> str:
    """`field: problem`, for the first few problems of an event (never the values: they may be personal data)."""
    problems: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        field, problem = _field_and_problem(error)
        text = f"{field}: {problem}"
        if text not in problems:
            problems.append(text)
        if len(problems) == _MAX_PROBLEMS_PER_EVENT:
            break
    return "; ".join(problems)


def cloud_event(event: TelemetryEvent, source: str) -> dict[str, Any]:
    """The CloudEvent 1.0 envelope of an event: its own id (consumers dedupe on it) and the contract's type."""
    return {
        "specversion": "1.0",
        "id": str(event.id),
        "source": source,
        "type": TelemetryEvent.TYPE,
        "datacontenttype": JSON_MEDIA_TYPE,
        "time": event.ts.isoformat(),
        "data": event.model_dump(mode="json"),
    }


def bulk_publish_entries(events: Sequence[TelemetryEvent], source: str) -> list[dict[str, Any]]:
    """The body of Dapr's bulk publish request: one entry per event, each a full CloudEvent, keyed by event id."""
    return [
        {
            "entryId": str(event.id),
            "event": cloud_event(event, source),
            "contentType": CLOUDEVENT_MEDIA_TYPE,
            "metadata": {},
        }
        for event in events
    ]
