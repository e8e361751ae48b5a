"""Use cases: fold deliveries into the read models exactly once, answer the sidecar for each delivery (dead letters
included), and answer reports."""

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from async_lru import alru_cache

from analytics.domain import (
    BUSINESS_INDEX_KEY,
    DEAD_LETTERS_KEY,
    TELEMETRY_INDEX_KEY,
    BusinessEvent,
    BusinessFact,
    BusinessHour,
    BusinessIndex,
    DeadLetter,
    Outcome,
    TelemetryIndex,
    TelemetryShard,
    funnel,
    hour_of,
    minute_of,
    parse_minute,
    record_dead_letter,
    summary,
    telemetry_key_of,
    timeseries,
    top_products,
)
from contracts.telemetry import TelemetryEvent
from sidecart_kit.documents import MalformedDocumentError
from sidecart_kit.events import (
    BulkDelivery,
    BulkEntry,
    CloudEvent,
    DeliveryStatus,
    EventDeliveries,
    envelope_of,
    log_unhandled_event,
    problems,
)
from sidecart_kit.logs import get_logger
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import DocumentUpdates, StateStore, StoreUnavailableError
from sidecart_kit.tracing import event_traceparent, spans_in_event_traces

log = get_logger(__name__)
EXCERPT_CHARS = 200
Item = TypeVar("Item")  # what one delivered entry adds to its document (an event, a fact)


class PublishFailedError(Exception):
    """The sidecar did not publish a message."""


class MessagePublisher(Protocol):
    async def publish(self, topic: str, cloud_event: Mapping[str, Any]) -> None:
        """Publishes a complete CloudEvent as is; raises PublishFailedError."""
        ...


@dataclass(frozen=True)
class TelemetryEntry:
    """One entry of a bulk delivery that holds a valid event."""

    entry_id: str
    event: TelemetryEvent


@dataclass(frozen=True)
class BusinessEntry:
    """One delivered sign-up or order outcome (the entry id of its bulk delivery, or "" for a single delivery)."""

    entry_id: str
    event_id: str
    event: BusinessEvent


class Analytics:
    """Folds events into ETag-guarded documents (one read-modify-write per touched document) and reads reports."""

    def __init__(
        self,
        store: StateStore,
        *,
        retention: timedelta = timedelta(hours=48),
        retry: RetryPolicy | None = None,
        max_dead_letters: int = 100,
        report_max_age: timedelta = timedelta(0),
        on_counted: Callable[[Sequence[datetime]], None] = lambda _: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`report_max_age`: how old the documents a report is computed from may be. Every report reads all the
        retained documents; within that age, reports share one read (and requests that arrive during a read wait
        for it), so a burst of report requests costs one read of the store, not one each."""
        self._store = store
        self._read_shards: Callable[[], Awaitable[list[TelemetryShard]]] = self._retained_shards
        self._read_hours: Callable[[], Awaitable[dict[str, BusinessHour]]] = self._business_hours
        if report_max_age > timedelta(0):
            shared = alru_cache(maxsize=1, ttl=report_max_age.total_seconds())
            self._read_shards, self._read_hours = shared(self._retained_shards), shared(self._business_hours)
        self._retention = retention
        self._updates = DocumentUpdates(store, retry=retry or RetryPolicy(), sleep=sleep)
        self._max_dead_letters = max_dead_letters
        self._on_counted = on_counted
        self._clock = clock
        # The last index this process read or wrote: when it already lists every touched key, no index write.
        self._telemetry_index = TelemetryIndex()
        self._business_index: BusinessIndex | None = None  # read before the first business event is placed

    # --- writes ---------------------------------------------------------------------------------------------

    def _oldest(self) -> datetime:
        return self._clock() - self._retention

    async def _index_telemetry(self, keys: set[str]) -> None:
        if self._telemetry_index.covers(keys):
            return
        oldest = minute_of(self._oldest())

        def change(document: Any) -> tuple[Any, TelemetryIndex]:
            index = TelemetryIndex.from_document(document)
            if index.covers(keys):
                return None, index
            updated = index.with_keys(keys, oldest)
            return updated.to_document(), updated

        self._telemetry_index = await self._updates.update_document(TELEMETRY_INDEX_KEY, change)

    async def _known_business_index(self) -> BusinessIndex:
        if self._business_index is None:
            self._business_index = BusinessIndex.from_document(await self._document(BUSINESS_INDEX_KEY))
        return self._business_index

    async def _index_business(self, keys: set[str]) -> None:
        if self._business_index is not None and self._business_index.covers(keys):
            return
        oldest = hour_of(self._oldest())

        def change(document: Any) -> tuple[Any, BusinessIndex]:
            index = BusinessIndex.from_document(document)
            if index.covers(keys):
                return None, index
            updated = index.with_keys(keys, oldest)
            return updated.to_document(), updated

        self._business_index = await self._updates.update_document(BUSINESS_INDEX_KEY, change)

    async def fold_telemetry(self, entries: Sequence[TelemetryEntry]) -> dict[str, Outcome | None]:
        """What became of each entry: counted, duplicate, expired, or None when its document could not be written
        (the entry must be redelivered; the rest of the delivery is done and will be recognised as duplicates)."""
        oldest = self._oldest()
        outcomes: dict[str, Outcome | None] = {}
        groups: dict[str, list[tuple[str, TelemetryEvent]]] = {}
        for entry in entries:
            if entry.event.ts < oldest:
                outcomes[entry.entry_id] = Outcome.EXPIRED
            else:
                groups.setdefault(telemetry_key_of(entry.event), []).append((entry.entry_id, entry.event))
        outcomes.update(await self._fold_groups("telemetry", groups, self._index_telemetry, _fold_shard))
        self._on_counted([entry.event.ts for entry in entries if outcomes[entry.entry_id] is Outcome.COUNTED])
        return outcomes

    async def fold_business(self, entries: Sequence[BusinessEntry]) -> dict[str, Outcome | None]:
        """Counts sign-ups and order outcomes once each, every touched hour document written once for all of them:
        what became of each entry, or None when its document could not be written (the entry must be redelivered;
        the rest are done and will be recognised as duplicates)."""
        oldest = self._oldest()
        try:
            index = await self._known_business_index()
        except (StoreUnavailableError, MalformedDocumentError) as exc:
            log.warning("business_index_not_read", error=str(exc))
            return {entry.entry_id: None for entry in entries}
        outcomes: dict[str, Outcome | None] = {}
        groups: dict[str, list[tuple[str, BusinessFact]]] = {}
        for entry in entries:
            fact = BusinessFact.of(entry.event_id, entry.event)
            if fact.at < oldest:
                outcomes[entry.entry_id] = Outcome.EXPIRED
            else:
                groups.setdefault(index.key_of(fact), []).append((entry.entry_id, fact))
        outcomes.update(await self._fold_groups("business", groups, self._index_business, _fold_hour))
        counted = (
            fact for group in groups.values() for entry_id, fact in group if outcomes[entry_id] is Outcome.COUNTED
        )
        self._on_counted([fact.at for fact in counted])
        return outcomes

    async def _fold_groups(
        self,
        kind: str,
        groups: Mapping[str, list[tuple[str, Item]]],
        index: Callable[[set[str]], Awaitable[None]],
        fold: Callable[[Any, list[Item]], tuple[Any, list[Outcome]]],
    ) -> dict[str, Outcome | None]:
        """Each document's entries (entry id, item) folded into it with one read-modify-write per document, the
        index first: a listed document that was never written is harmless, a written one never listed is not.
        What became of each entry, None where its document (or the index) could not be written."""
        outcomes: dict[str, Outcome | None] = {}
        if not groups:
            return outcomes
        try:
            await index(set(groups))
        except (StoreUnavailableError, MalformedDocumentError) as exc:
            log.warning(f"{kind}_index_not_written", error=str(exc))
            return {entry_id: None for group in groups.values() for entry_id, _ in group}

        async def write(key: str, group: list[tuple[str, Item]]) -> None:
            items = [item for _, item in group]
            try:
                results = await self._updates.update_document(key, lambda document: fold(document, items))
            except (StoreUnavailableError, MalformedDocumentError) as exc:
                log.warning(f"{kind}_document_not_written", key=key, entries=len(group), error=str(exc))
                outcomes.update((entry_id, None) for entry_id, _ in group)
                return
            outcomes.update((entry_id, outcome) for (entry_id, _), outcome in zip(group, results, strict=True))

        await asyncio.gather(*(write(key, group) for key, group in groups.items()))
        return outcomes

    async def record_dead_letter(self, letter: DeadLetter) -> bool:
        """Adds a dead letter to the bounded list (newest first); False when it was listed already."""

        def change(document: Any) -> tuple[Any, bool]:
            updated, added = record_dead_letter(document, letter, self._max_dead_letters)
            return (updated if added else None), added

        return await self._updates.update_document(DEAD_LETTERS_KEY, change)

    # --- reads ----------------------------------------------------------------------------------------------

    async def _document(self, key: str) -> Any:
        stored = await self._store.get(key)
        return None if stored is None else stored.document

    async def dead_letters(self) -> list[dict[str, Any]]:
        document = await self._document(DEAD_LETTERS_KEY)
        items = document.get("items") if isinstance(document, dict) else None
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    async def _telemetry_shards(self, first_minute: str, last_minute: str) -> list[tuple[str, TelemetryShard]]:
        index = TelemetryIndex.from_document(await self._document(TELEMETRY_INDEX_KEY))
        keys = index.keys(first_minute, last_minute)
        documents = await self._store.get_many(keys) if keys else {}
        shards: list[tuple[str, TelemetryShard]] = []
        for key in keys:
            if key not in documents:
                continue
            try:
                shards.append((key.split(":")[1], TelemetryShard.from_document(documents[key].document)))
            except MalformedDocumentError as exc:
                log.error("document_unreadable", key=key, error=str(exc))
        return shards

    async def _business_hours(self) -> dict[str, BusinessHour]:
        index = BusinessIndex.from_document(await self._document(BUSINESS_INDEX_KEY))
        keys = index.keys(hour_of(self._oldest()))
        documents = await self._store.get_many([key for _, key in keys]) if keys else {}
        hours: dict[str, BusinessHour] = {}
        for hour, key in keys:
            if key not in documents:
                continue
            try:
                share = BusinessHour.from_document(documents[key].document)
            except MalformedDocumentError as exc:
                log.error("document_unreadable", key=key, error=str(exc))
                continue
            hours[hour] = hours[hour] + share if hour in hours else share
        return hours

    async def _retained_shards(self) -> list[TelemetryShard]:
        shards = await self._telemetry_shards(minute_of(self._oldest()), "999999999999")
        return [shard for _, shard in shards]

    async def summary(self) -> dict[str, Any]:
        shards, hours = await asyncio.gather(self._read_shards(), self._read_hours())
        return summary(shards, hours)

    async def top_products(self, limit: int) -> list[dict[str, Any]]:
        return top_products(await self._read_shards(), limit)

    async def funnel(self) -> dict[str, int]:
        shards, hours = await asyncio.gather(self._read_shards(), self._read_hours())
        return funnel(shards, hours.values())

    async def timeseries(self, event_type: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Counts per minute for minutes that start in [start, end)."""
        shards = await self._telemetry_shards(minute_of(start), minute_of(end))
        inside = [(minute, shard) for minute, shard in shards if start <= parse_minute(minute) < end]
        return timeseries(inside, event_type)


def _fold_shard(document: Any, events: list[TelemetryEvent]) -> tuple[Any, list[Outcome]]:
    updated, results = TelemetryShard.from_document(document).fold(events)
    return (updated.to_document() if Outcome.COUNTED in results else None), results


def _fold_hour(document: Any, facts: list[BusinessFact]) -> tuple[Any, list[Outcome]]:
    updated, results = BusinessHour.from_document(document).fold(facts)
    return (updated.to_document() if Outcome.COUNTED in results else None), results


def _dead_letter_envelope(raw: Any, fallback_id: str) -> dict[str, Any]:
    """The malformed message as a CloudEvent to publish on the dead-letter topic (kept as is when it is one)."""
    if isinstance(raw, dict) and raw.get("id") and raw.get("type"):
        return dict(raw)
    return {
        "specversion": "1.0",
        "id": fallback_id,
        "type": "sidecart.analytics.undecodable.v1",
        "source": "analytics",
        "datacontenttype": "application/json",
        "data": {"raw": raw if isinstance(raw, str | dict | list) else repr(raw)},
    }


class Deliveries:
    """What the sidecar is answered for each delivered message, counted in `events` by route and outcome:
    SUCCESS when done (or done before, or nothing to do), RETRY when a document could not be written, and for a
    malformed message what settings say (see Settings.malformed_entry_action), publishing it as a dead letter."""

    def __init__(
        self,
        analytics: Analytics,
        publisher: MessagePublisher,
        events: EventDeliveries,
        *,
        dead_letter_topic: str,
        telemetry_dead_letter_topic: str,
        malformed_entry_action: Literal["publish", "RETRY", "DROP"] = "DROP",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._analytics = analytics
        self._publisher = publisher
        self._events = events
        self._dead_letter_topic = dead_letter_topic
        self._telemetry_dead_letter_topic = telemetry_dead_letter_topic
        self._malformed_entry_action = malformed_entry_action
        self._clock = clock

    async def telemetry(self, route: str, delivery: BulkDelivery) -> dict[str, DeliveryStatus]:
        """One status per entry, in their order; each touched document is written once."""
        now = self._clock()
        statuses: dict[str, DeliveryStatus] = {}
        valid: list[TelemetryEntry] = []
        traceparents: list[str | None] = []
        for entry in delivery.entries:
            statuses[entry.entryId] = DeliveryStatus.RETRY  # keeps the order of the entries; each is decided below
            raw = entry.envelope()
            try:
                envelope = CloudEvent.model_validate(raw)
                event = TelemetryEvent.model_validate(envelope.payload(), context={"now": now})
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                statuses[entry.entryId] = await self._malformed_entry(route, raw, entry.entryId, exc)
                continue
            valid.append(TelemetryEntry(entry.entryId, event))
            traceparents.append(event_traceparent(raw))
        with spans_in_event_traces(f"events {route}", traceparents):
            outcomes = await self._analytics.fold_telemetry(valid)
        for entry_id, outcome in outcomes.items():
            statuses[entry_id] = DeliveryStatus.RETRY if outcome is None else DeliveryStatus.SUCCESS
            self._events.count(route, "retry" if outcome is None else outcome.value)
        log.info(
            "telemetry_delivery",
            entries=len(delivery.entries),
            counted=sum(outcome is Outcome.COUNTED for outcome in outcomes.values()),
            duplicates=sum(outcome is Outcome.DUPLICATE for outcome in outcomes.values()),
            expired=sum(outcome is Outcome.EXPIRED for outcome in outcomes.values()),
            retry=sum(status is DeliveryStatus.RETRY for status in statuses.values()),
        )
        return statuses

    async def _malformed_entry(self, route: str, raw: Any, entry_id: str, exc: Exception) -> DeliveryStatus:
        event_id = raw.get("id") if isinstance(raw, dict) else None
        log.error("telemetry_entry_malformed", entry_id=entry_id, event_id=event_id, problems=problems(exc))
        if self._malformed_entry_action != "publish":
            self._events.count(route, self._malformed_entry_action.lower())
            return DeliveryStatus(self._malformed_entry_action)
        try:
            await self._publisher.publish(self._telemetry_dead_letter_topic, _dead_letter_envelope(raw, entry_id))
        except PublishFailedError as failure:
            log.warning("dead_letter_not_published", entry_id=entry_id, error=str(failure))
            self._events.count(route, "retry")
            return DeliveryStatus.RETRY
        self._events.count(route, "dead_lettered")
        return DeliveryStatus.SUCCESS

    async def business(self, route: str, contract: type[BusinessEvent], body: bytes) -> DeliveryStatus:
        """A sign-up or order outcome, counted once (or counted before, or out of retention): SUCCESS; malformed:
        published to the dead-letter topic and SUCCESS (RETRY if that fails); RETRY when the store fails."""
        delivery = BulkDelivery(entries=[BulkEntry(entryId="", event=envelope_of(body))])
        (status,) = (await self.business_bulk(route, contract, delivery)).values()
        return status

    async def business_bulk(
        self, route: str, contract: type[BusinessEvent], delivery: BulkDelivery
    ) -> dict[str, DeliveryStatus]:
        """A bulk delivery of sign-ups or order outcomes, each answered as `business` answers one; every touched
        hour document is written once for the whole delivery."""
        statuses: dict[str, DeliveryStatus] = {}
        valid: list[BusinessEntry] = []
        traceparents: list[str | None] = []
        for entry in delivery.entries:
            raw = entry.envelope()
            try:
                envelope = CloudEvent.model_validate(raw)
                if not envelope.id:
                    raise ValueError("the CloudEvent has no id")
                data = contract.model_validate(envelope.payload())
                # Counted once per fact: an order's completion published twice (two CloudEvent ids) counts once.
                valid.append(BusinessEntry(entry.entryId, data.fact_id() or envelope.id, data))
                traceparents.append(event_traceparent(raw))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                statuses[entry.entryId] = await self._malformed_business(route, raw, exc)
        # The batch's writes are shared: each event's trace holds a span of the batch, linked to it.
        with spans_in_event_traces(f"events {route}", traceparents):
            outcomes = await self._analytics.fold_business(valid)
        for handled in valid:
            outcome = outcomes[handled.entry_id]
            if outcome is None:
                log.warning("event_retry", route=route, event_id=handled.event_id)
            statuses[handled.entry_id] = DeliveryStatus.RETRY if outcome is None else DeliveryStatus.SUCCESS
        self._events.tally(route, ("retry" if outcome is None else outcome.value for outcome in outcomes.values()))
        return {entry.entryId: statuses[entry.entryId] for entry in delivery.entries}

    async def _malformed_business(self, route: str, raw: Any, exc: Exception) -> DeliveryStatus:
        log.error("event_malformed", route=route, problems=problems(exc))
        try:
            await self._publisher.publish(self._dead_letter_topic, _dead_letter_envelope(raw, "unknown"))
        except PublishFailedError as failure:
            log.warning("dead_letter_not_published", error=str(failure))
            return DeliveryStatus.RETRY
        self._events.count(route, "dead_lettered")
        return DeliveryStatus.SUCCESS

    def ignore(self, route: str, envelope: Any) -> DeliveryStatus:
        """An event type this version does not handle: acknowledged and logged."""
        return self._events.ignore(route, envelope)

    def ignore_bulk(self, route: str, entries: list[Any]) -> dict[str, DeliveryStatus]:
        """Events of a type this version does not handle, delivered in bulk (the default route of a bulk
        subscription receives bulk deliveries too): each acknowledged and logged."""
        entries = [entry for entry in entries if isinstance(entry, dict)]
        for entry in entries:
            event = BulkEntry(entryId=str(entry.get("entryId")), event=entry.get("event")).envelope()
            log_unhandled_event(event)
        self._events.count(route, "ignored", len(entries))
        return {str(entry.get("entryId")): DeliveryStatus.SUCCESS for entry in entries}

    async def dead_letter(self, route: str, body: bytes) -> DeliveryStatus:
        """A message that could not be processed: kept (id, type, when, an excerpt) in a bounded list; RETRY when
        the store fails."""
        attributes = envelope_of(body)
        attributes = attributes if isinstance(attributes, dict) else {}
        data = attributes.get("data", attributes.get("data_base64"))
        excerpt = body.decode(errors="replace") if data is None else json.dumps(data, default=str)
        letter = DeadLetter(
            id=str(attributes.get("id") or "unknown"),
            type=str(attributes.get("type") or "unknown"),
            received_at=self._clock().isoformat(),
            excerpt=excerpt[:EXCERPT_CHARS],
        )
        try:
            added = await self._analytics.record_dead_letter(letter)
        except StoreUnavailableError as exc:  # ContentionError included
            log.warning("dead_letter_retry", event_id=letter.id, error=str(exc))
            return DeliveryStatus.RETRY
        log.warning("dead_letter_recorded", event_id=letter.id, event_type=letter.type, new=added)
        self._events.count(route, "recorded" if added else "duplicate")
        return DeliveryStatus.SUCCESS
