"""Use cases: fold deliveries into the read models exactly once, record dead letters, and answer reports."""

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog

from analytics.domain import (
    BUSINESS_INDEX_KEY,
    DEAD_LETTERS_KEY,
    TELEMETRY_INDEX_KEY,
    BusinessEvent,
    BusinessFact,
    BusinessHour,
    BusinessIndex,
    DeadLetter,
    MalformedDocumentError,
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

log = structlog.get_logger("analytics.handlers")
T = TypeVar("T")


class StoreUnavailableError(Exception):
    """The state store could not be read or written: a transient failure, worth redelivering the event."""


class ConcurrencyConflictError(Exception):
    """The document changed between read and write (stale ETag): read again and retry."""


class PublishFailedError(Exception):
    """The sidecar did not publish a message."""


@dataclass(frozen=True)
class Versioned:
    """A stored document and the ETag it was read with (None, None: nothing stored under the key)."""

    document: Any
    etag: str | None


class StateStore(Protocol):
    async def get(self, key: str) -> Versioned:
        """The document under `key` (strong consistency). Raises StoreUnavailableError."""
        ...

    async def save(self, key: str, document: Any, etag: str | None) -> None:
        """Writes only if the stored document still has `etag` (None: only if none exists yet).

        Raises ConcurrencyConflictError when it does not, StoreUnavailableError on any other failure.
        """
        ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The documents stored under `keys` (absent keys are left out), in few round trips."""
        ...


class MessagePublisher(Protocol):
    async def publish(self, topic: str, cloud_event: Mapping[str, Any]) -> None:
        """Publishes a complete CloudEvent as is; raises PublishFailedError."""
        ...


class SidecarHealth(Protocol):
    async def is_ready(self) -> bool: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    backoff_seconds: float = 0.02
    backoff_max_seconds: float = 0.5

    def delay(self, attempt: int) -> float:
        # Full jitter, so deliveries that collided once do not collide again in lockstep.
        return random.uniform(0, min(self.backoff_max_seconds, self.backoff_seconds * 2**attempt))  # noqa: S311


class KeyLocks:
    """One asyncio lock per document key, alive only while someone holds or waits for it.

    Writes to the same key from one process are serialized here, so ETag conflicts only arise between processes.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass(frozen=True)
class TelemetryEntry:
    """One entry of a bulk delivery that holds a valid event."""

    entry_id: str
    event: TelemetryEvent


class Analytics:
    """Folds events into ETag-guarded documents (one read-modify-write per touched document) and reads reports."""

    def __init__(
        self,
        store: StateStore,
        *,
        retention: timedelta = timedelta(hours=48),
        retry: RetryPolicy | None = None,
        max_dead_letters: int = 100,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._retention = retention
        self._retry = retry or RetryPolicy()
        self._max_dead_letters = max_dead_letters
        self._clock = clock
        self._sleep = sleep
        self.locks = KeyLocks()
        # The last index this process read or wrote: when it already lists every touched key, no index write.
        self._telemetry_index = TelemetryIndex()
        self._business_index = BusinessIndex()

    # --- writes ---------------------------------------------------------------------------------------------

    async def _update(self, key: str, change: Callable[[Any], tuple[Any, T]]) -> T:
        """Read `key`, apply `change` (new document or None for no write, and a result), write with the ETag."""
        async with self.locks.hold(key):
            for attempt in range(self._retry.attempts):
                current = await self._store.get(key)
                document, result = change(current.document)
                if document is None:
                    return result
                try:
                    await self._store.save(key, document, current.etag)
                except ConcurrencyConflictError:
                    log.info("write_conflict", key=key, attempt=attempt + 1)
                    await self._sleep(self._retry.delay(attempt))
                    continue
                return result
        raise ConcurrencyConflictError(f"{key}: still conflicting after {self._retry.attempts} attempts")

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

        self._telemetry_index = await self._update(TELEMETRY_INDEX_KEY, change)

    async def _index_business(self, key: str) -> None:
        if self._business_index.covers([key]):
            return
        oldest = hour_of(self._oldest())

        def change(document: Any) -> tuple[Any, BusinessIndex]:
            index = BusinessIndex.from_document(document)
            if index.covers([key]):
                return None, index
            updated = index.with_keys([key], oldest)
            return updated.to_document(), updated

        self._business_index = await self._update(BUSINESS_INDEX_KEY, change)

    async def fold_telemetry(self, entries: Sequence[TelemetryEntry]) -> dict[str, Outcome | None]:
        """What became of each entry: counted, duplicate, expired, or None when its document could not be written
        (the entry must be redelivered; the rest of the delivery is done and will be recognised as duplicates)."""
        oldest = self._oldest()
        outcomes: dict[str, Outcome | None] = {}
        groups: dict[str, list[TelemetryEntry]] = {}
        for entry in entries:
            if entry.event.ts < oldest:
                outcomes[entry.entry_id] = Outcome.EXPIRED
            else:
                groups.setdefault(telemetry_key_of(entry.event), []).append(entry)
        if not groups:
            return outcomes
        # The index first: a listed document that was never written is harmless, a written one never listed is not.
        try:
            await self._index_telemetry(set(groups))
        except (StoreUnavailableError, ConcurrencyConflictError, MalformedDocumentError) as exc:
            log.warning("telemetry_index_not_written", error=str(exc))
            for group in groups.values():
                outcomes.update((entry.entry_id, None) for entry in group)
            return outcomes

        async def write(key: str, group: list[TelemetryEntry]) -> None:
            def change(document: Any) -> tuple[Any, list[Outcome]]:
                updated, results = TelemetryShard.from_document(document).fold([entry.event for entry in group])
                counted = Outcome.COUNTED in results
                return (updated.to_document() if counted else None), results

            try:
                results = await self._update(key, change)
            except (StoreUnavailableError, ConcurrencyConflictError, MalformedDocumentError) as exc:
                log.warning("telemetry_document_not_written", key=key, entries=len(group), error=str(exc))
                outcomes.update((entry.entry_id, None) for entry in group)
                return
            outcomes.update((entry.entry_id, outcome) for entry, outcome in zip(group, results, strict=True))

        await asyncio.gather(*(write(key, group) for key, group in groups.items()))
        return outcomes

    async def fold_business(self, event_id: str, event: BusinessEvent) -> Outcome:
        """Counts a sign-up or an order outcome once. Raises StoreUnavailableError or ConcurrencyConflictError."""
        fact = BusinessFact.of(event_id, event)
        if fact.at < self._oldest():
            return Outcome.EXPIRED
        await self._index_business(fact.key)

        def change(document: Any) -> tuple[Any, Outcome]:
            updated, outcome = BusinessHour.from_document(document).fold(fact)
            return (updated.to_document() if outcome is Outcome.COUNTED else None), outcome

        return await self._update(fact.key, change)

    async def record_dead_letter(self, letter: DeadLetter) -> bool:
        """Adds a dead letter to the bounded list (newest first); False when it was listed already."""

        def change(document: Any) -> tuple[Any, bool]:
            updated, added = record_dead_letter(document, letter, self._max_dead_letters)
            return (updated if added else None), added

        return await self._update(DEAD_LETTERS_KEY, change)

    # --- reads ----------------------------------------------------------------------------------------------

    async def dead_letters(self) -> list[dict[str, Any]]:
        document = (await self._store.get(DEAD_LETTERS_KEY)).document
        items = document.get("items") if isinstance(document, dict) else None
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    async def _telemetry_shards(self, first_minute: str, last_minute: str) -> list[tuple[str, TelemetryShard]]:
        index = TelemetryIndex.from_document((await self._store.get(TELEMETRY_INDEX_KEY)).document)
        keys = index.keys(first_minute, last_minute)
        documents = await self._store.get_many(keys) if keys else {}
        shards: list[tuple[str, TelemetryShard]] = []
        for key in keys:
            if key not in documents:
                continue
            try:
                shards.append((key.split(":")[1], TelemetryShard.from_document(documents[key])))
            except MalformedDocumentError as exc:
                log.error("document_unreadable", key=key, error=str(exc))
        return shards

    async def _business_hours(self) -> dict[str, BusinessHour]:
        index = BusinessIndex.from_document((await self._store.get(BUSINESS_INDEX_KEY)).document)
        keys = index.keys(hour_of(self._oldest()))
        documents = await self._store.get_many(keys) if keys else {}
        hours: dict[str, BusinessHour] = {}
        for key in keys:
            if key not in documents:
                continue
            try:
                hours[key.removeprefix("b:")] = BusinessHour.from_document(documents[key])
            except MalformedDocumentError as exc:
                log.error("document_unreadable", key=key, error=str(exc))
        return hours

    async def _retained_shards(self) -> list[TelemetryShard]:
        shards = await self._telemetry_shards(minute_of(self._oldest()), "999999999999")
        return [shard for _, shard in shards]

    async def summary(self) -> dict[str, Any]:
        shards, hours = await asyncio.gather(self._retained_shards(), self._business_hours())
        return summary(shards, hours)

    async def top_products(self, limit: int) -> list[dict[str, Any]]:
        return top_products(await self._retained_shards(), limit)

    async def funnel(self) -> dict[str, int]:
        shards, hours = await asyncio.gather(self._retained_shards(), self._business_hours())
        return funnel(shards, hours.values())

    async def timeseries(self, event_type: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Counts per minute for minutes that start in [start, end)."""
        shards = await self._telemetry_shards(minute_of(start), minute_of(end))
        inside = [(minute, shard) for minute, shard in shards if start <= parse_minute(minute) < end]
        return timeseries(inside, event_type)
