"""Analytics read models: where each event is counted, how events fold into a document, and the report math.

Exactness: an event is counted in exactly one document, chosen from the event alone (its timestamp and id; for an
hour kept in one document before business documents were sharded, that document), and the ids of the events counted
in a document live in that same document. Counting an event and remembering its id are therefore one single-key
write (ETag-guarded), so a redelivery either finds its id (skipped) or finds neither the id nor the count (counted
now). Events older than the retention window are acknowledged without being counted, so the dedupe window equals the
retention window.

A document holds one of SHARDS shares of its minute or hour, so it stays within the sidecar's request size (4 MiB by
default, about 100,000 ids) at SHARDS times the rate one document per minute or hour would.

Plain Python: no FastAPI, no Dapr.
"""

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from contracts.orders import OrderCancelled, OrderCompleted
from contracts.telemetry import TelemetryEvent
from contracts.users import UserRegistered
from sidecart_kit.documents import MalformedDocumentError

TELEMETRY_TYPES: tuple[str, ...] = ("page_view", "product_view", "search", "add_to_cart")
SHARDS = 16
TELEMETRY_INDEX_KEY = "t:index"
BUSINESS_INDEX_KEY = "b:index"
DEAD_LETTERS_KEY = "dl:recent"
_MINUTE = "%Y%m%d%H%M"
_HOUR = "%Y%m%d%H"

BusinessEvent = UserRegistered | OrderCompleted | OrderCancelled


def shard_of(event_id: str) -> int:
    """A stable shard (the same in every process and every run, unlike hash())."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:4], "big") % SHARDS


def minute_of(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(_MINUTE)


def hour_of(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(_HOUR)


def telemetry_key(minute: str, shard: int) -> str:
    return f"t:{minute}:{shard:02d}"


def telemetry_key_of(event: TelemetryEvent) -> str:
    return telemetry_key(minute_of(event.ts), shard_of(str(event.id)))


def business_key(hour: str, shard: int) -> str:
    return f"b:{hour}:{shard:02d}"


def unsharded_business_key(hour: str) -> str:
    """The one document an hour had before business documents were sharded: still read, and still written for the
    hours that have one, so that an event counted in it is recognised when it is delivered again."""
    return f"b:{hour}"


def parse_minute(minute: str) -> datetime:
    return datetime.strptime(minute, _MINUTE).replace(tzinfo=UTC)


def parse_hour(hour: str) -> datetime:
    return datetime.strptime(hour, _HOUR).replace(tzinfo=UTC)


def _int_map(value: Any, name: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and type(v) is int for k, v in value.items()):
        raise MalformedDocumentError(f"{name} is not a map of counts")
    return dict(value)


def _ids(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MalformedDocumentError("ids is not a list of strings")
    return list(value)


def _int(value: Any, name: str) -> int:
    if value is None:
        return 0
    if type(value) is not int:
        raise MalformedDocumentError(f"{name} is not an integer")
    return value


class Outcome(StrEnum):
    COUNTED = "counted"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"


# --- Telemetry shard documents ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TelemetryShard:
    """One minute's share of telemetry (one of SHARDS), and the ids of the events counted in it."""

    counts_by_type: Mapping[str, int] = field(default_factory=dict)
    product_views_by_sku: Mapping[str, int] = field(default_factory=dict)
    add_to_carts_by_sku: Mapping[str, int] = field(default_factory=dict)
    ids: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, document: Any) -> "TelemetryShard":
        if document is None:
            return cls()
        if not isinstance(document, dict):
            raise MalformedDocumentError("a telemetry document is not an object")
        return cls(
            counts_by_type=_int_map(document.get("counts_by_type"), "counts_by_type"),
            product_views_by_sku=_int_map(document.get("product_views_by_sku"), "product_views_by_sku"),
            add_to_carts_by_sku=_int_map(document.get("add_to_carts_by_sku"), "add_to_carts_by_sku"),
            ids=tuple(_ids(document.get("ids"))),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "counts_by_type": dict(self.counts_by_type),
            "product_views_by_sku": dict(self.product_views_by_sku),
            "add_to_carts_by_sku": dict(self.add_to_carts_by_sku),
            "ids": list(self.ids),
        }

    def fold(self, events: Sequence[TelemetryEvent]) -> tuple["TelemetryShard", list[Outcome]]:
        """This shard with every event not counted before added once; and what became of each event, in order
        (an id seen twice, in the document or earlier in `events`, is a duplicate)."""
        seen = set(self.ids)
        by_type = Counter(self.counts_by_type)
        views = Counter(self.product_views_by_sku)
        carts = Counter(self.add_to_carts_by_sku)
        ids = list(self.ids)
        outcomes: list[Outcome] = []
        for event in events:
            event_id = str(event.id)
            if event_id in seen:
                outcomes.append(Outcome.DUPLICATE)
                continue
            seen.add(event_id)
            ids.append(event_id)
            outcomes.append(Outcome.COUNTED)
            by_type[event.type] += 1
            if event.type == "product_view" and event.sku is not None:
                views[event.sku] += 1
            elif event.type == "add_to_cart" and event.sku is not None:
                carts[event.sku] += 1
        return TelemetryShard(dict(by_type), dict(views), dict(carts), tuple(ids)), outcomes


# --- Business hour documents ------------------------------------------------------------------------------------


class BusinessKind(StrEnum):
    SIGNUP = "signup"
    ORDER_COMPLETED = "order_completed"
    ORDER_CANCELLED = "order_cancelled"


@dataclass(frozen=True)
class BusinessFact:
    """What a business event adds to the read models, and when it happened (which picks its document)."""

    event_id: str
    kind: BusinessKind
    at: datetime
    revenue_cents: int = 0

    @classmethod
    def of(cls, event_id: str, event: BusinessEvent) -> "BusinessFact":
        if isinstance(event, UserRegistered):
            return cls(event_id, BusinessKind.SIGNUP, _aware(event.registered_at))
        if isinstance(event, OrderCompleted):
            return cls(event_id, BusinessKind.ORDER_COMPLETED, _aware(event.completed_at), event.total_cents)
        return cls(event_id, BusinessKind.ORDER_CANCELLED, _aware(event.cancelled_at))

    @property
    def hour(self) -> str:
        return hour_of(self.at)

    @property
    def key(self) -> str:
        return business_key(self.hour, shard_of(self.event_id))


def _aware(value: datetime) -> datetime:
    # The contracts allow a naive datetime; the publishers stamp UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class BusinessHour:
    """One hour's share of business events (one of SHARDS), and the ids of the events counted in it."""

    signups: int = 0
    orders_completed: int = 0
    orders_cancelled: int = 0
    revenue_cents: int = 0
    ids: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, document: Any) -> "BusinessHour":
        if document is None:
            return cls()
        if not isinstance(document, dict):
            raise MalformedDocumentError("a business document is not an object")
        return cls(
            signups=_int(document.get("signups"), "signups"),
            orders_completed=_int(document.get("orders_completed"), "orders_completed"),
            orders_cancelled=_int(document.get("orders_cancelled"), "orders_cancelled"),
            revenue_cents=_int(document.get("revenue_cents"), "revenue_cents"),
            ids=tuple(_ids(document.get("ids"))),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "signups": self.signups,
            "orders_completed": self.orders_completed,
            "orders_cancelled": self.orders_cancelled,
            "revenue_cents": self.revenue_cents,
            "ids": list(self.ids),
        }

    def fold(self, facts: Sequence[BusinessFact]) -> tuple["BusinessHour", list[Outcome]]:
        """This hour with every fact not counted before added once; and what became of each fact, in order (an id
        seen twice, in the document or earlier in `facts`, is a duplicate)."""
        seen = set(self.ids)
        counts = Counter(signups=self.signups, completed=self.orders_completed, cancelled=self.orders_cancelled)
        revenue = self.revenue_cents
        ids = list(self.ids)
        outcomes: list[Outcome] = []
        for fact in facts:
            if fact.event_id in seen:
                outcomes.append(Outcome.DUPLICATE)
                continue
            seen.add(fact.event_id)
            ids.append(fact.event_id)
            outcomes.append(Outcome.COUNTED)
            if fact.kind is BusinessKind.SIGNUP:
                counts["signups"] += 1
            elif fact.kind is BusinessKind.ORDER_COMPLETED:
                counts["completed"] += 1
                revenue += fact.revenue_cents
            else:
                counts["cancelled"] += 1
        updated = BusinessHour(counts["signups"], counts["completed"], counts["cancelled"], revenue, tuple(ids))
        return updated, outcomes

    def __add__(self, other: "BusinessHour") -> "BusinessHour":
        """Two shares of one hour, as the reports see them (counts only)."""
        return BusinessHour(
            self.signups + other.signups,
            self.orders_completed + other.orders_completed,
            self.orders_cancelled + other.orders_cancelled,
            self.revenue_cents + other.revenue_cents,
        )


# --- Indexes: which documents exist, so reports read only those --------------------------------------------------


@dataclass(frozen=True)
class TelemetryIndex:
    """Known minutes, each with a bit mask of the shards written in it."""

    minutes: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Any) -> "TelemetryIndex":
        if document is None:
            return cls()
        if not isinstance(document, dict):
            raise MalformedDocumentError("the telemetry index is not an object")
        return cls(_int_map(document.get("minutes"), "minutes"))

    def to_document(self) -> dict[str, Any]:
        return {"minutes": dict(self.minutes)}

    def covers(self, keys: Iterable[str]) -> bool:
        return all(self.minutes.get(minute, 0) & (1 << shard) for minute, shard in map(_split_telemetry_key, keys))

    def with_keys(self, keys: Iterable[str], oldest_minute: str) -> "TelemetryIndex":
        """The index with `keys` added and minutes before `oldest_minute` (out of retention) forgotten."""
        minutes = {minute: mask for minute, mask in self.minutes.items() if minute >= oldest_minute}
        for minute, shard in map(_split_telemetry_key, keys):
            minutes[minute] = minutes.get(minute, 0) | (1 << shard)
        return TelemetryIndex(dict(sorted(minutes.items())))

    def keys(self, first_minute: str, last_minute: str) -> list[str]:
        """The documents of the minutes first..last (inclusive), in minute order."""
        return [
            telemetry_key(minute, shard)
            for minute, mask in sorted(self.minutes.items())
            if first_minute <= minute <= last_minute
            for shard in range(SHARDS)
            if mask & (1 << shard)
        ]


def _split_telemetry_key(key: str) -> tuple[str, int]:
    _, minute, shard = key.split(":")
    return minute, int(shard)


# The bit of BusinessIndex.hours that marks an hour with an unsharded document.
UNSHARDED = 1 << SHARDS


@dataclass(frozen=True)
class BusinessIndex:
    """Known hours, each with a bit mask of the shards written in it (and UNSHARDED where the hour has the one
    document hours had before sharding)."""

    hours: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Any) -> "BusinessIndex":
        if document is None:
            return cls()
        if not isinstance(document, dict):
            raise MalformedDocumentError("the business index is not an object")
        hours = document.get("hours")
        if isinstance(hours, list):  # written before sharding: a list of hours, each with one document
            return cls(dict.fromkeys(_ids(hours), UNSHARDED))
        return cls(_int_map(hours, "hours"))

    def to_document(self) -> dict[str, Any]:
        return {"hours": dict(self.hours)}

    def key_of(self, fact: BusinessFact) -> str:
        """The document that counts `fact`: its hour's unsharded one where that hour has one, else its shard's."""
        if self.hours.get(fact.hour, 0) & UNSHARDED:
            return unsharded_business_key(fact.hour)
        return fact.key

    def covers(self, keys: Iterable[str]) -> bool:
        return all(self.hours.get(hour, 0) & bit for hour, bit in map(_split_business_key, keys))

    def with_keys(self, keys: Iterable[str], oldest_hour: str) -> "BusinessIndex":
        """The index with `keys` added and hours before `oldest_hour` (out of retention) forgotten."""
        hours = {hour: mask for hour, mask in self.hours.items() if hour >= oldest_hour}
        for hour, bit in map(_split_business_key, keys):
            hours[hour] = hours.get(hour, 0) | bit
        return BusinessIndex(dict(sorted(hours.items())))

    def keys(self, first_hour: str) -> list[tuple[str, str]]:
        """(hour, document key) of every document of the hours from `first_hour` on, in hour order."""
        keys: list[tuple[str, str]] = []
        for hour, mask in sorted(self.hours.items()):
            if hour < first_hour:
                continue
            if mask & UNSHARDED:
                keys.append((hour, unsharded_business_key(hour)))
            keys.extend((hour, business_key(hour, shard)) for shard in range(SHARDS) if mask & (1 << shard))
        return keys


def _split_business_key(key: str) -> tuple[str, int]:
    _, hour, *shard = key.split(":")
    return hour, (1 << int(shard[0])) if shard else UNSHARDED


# --- Dead letters -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    id: str
    type: str
    received_at: str
    excerpt: str

    def to_document(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "received_at": self.received_at, "excerpt": self.excerpt}


def record_dead_letter(document: Any, letter: DeadLetter, limit: int) -> tuple[dict[str, Any], bool]:
    """The dead-letter list with `letter` first (newest first, at most `limit`); False when already listed."""
    items = document.get("items") if isinstance(document, dict) else None
    items = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    if any(item.get("id") == letter.id for item in items):
        return {"items": items}, False
    return {"items": [letter.to_document(), *items][:limit]}, True


# --- Reports ----------------------------------------------------------------------------------------------------


def retention_start(now: datetime, retention: timedelta) -> datetime:
    return now - retention


def summary(shards: Iterable[TelemetryShard], hours: Mapping[str, BusinessHour]) -> dict[str, Any]:
    by_type: Counter[str] = Counter()
    for shard in shards:
        by_type.update(shard.counts_by_type)
    revenue_by_hour = [
        {"hour": parse_hour(hour).isoformat(), "revenue_cents": doc.revenue_cents}
        for hour, doc in sorted(hours.items())
        if doc.revenue_cents
    ]
    signups_by_day: Counter[str] = Counter()
    for hour, doc in hours.items():
        if doc.signups:
            signups_by_day[parse_hour(hour).date().isoformat()] += doc.signups
    return {
        "events_total": sum(by_type[name] for name in TELEMETRY_TYPES),
        "events_by_type": {name: by_type[name] for name in TELEMETRY_TYPES},
        "signups_total": sum(doc.signups for doc in hours.values()),
        "orders_completed": sum(doc.orders_completed for doc in hours.values()),
        "orders_cancelled": sum(doc.orders_cancelled for doc in hours.values()),
        "revenue_cents": sum(doc.revenue_cents for doc in hours.values()),
        "revenue_by_hour": revenue_by_hour,
        "signups_by_day": [{"day": day, "signups": count} for day, count in sorted(signups_by_day.items())],
    }


def top_products(shards: Iterable[TelemetryShard], limit: int) -> list[dict[str, Any]]:
    views: Counter[str] = Counter()
    for shard in shards:
        views.update(shard.product_views_by_sku)
    ranked = sorted(views.items(), key=lambda item: (-item[1], item[0]))
    return [{"sku": sku, "views": count} for sku, count in ranked[:limit] if count > 0]


def funnel(shards: Iterable[TelemetryShard], hours: Iterable[BusinessHour]) -> dict[str, int]:
    by_type: Counter[str] = Counter()
    for shard in shards:
        by_type.update(shard.counts_by_type)
    return {
        "product_views": by_type["product_view"],
        "add_to_carts": by_type["add_to_cart"],
        "orders_completed": sum(doc.orders_completed for doc in hours),
    }


def timeseries(shards_by_minute: Iterable[tuple[str, TelemetryShard]], event_type: str) -> list[dict[str, Any]]:
    counts: Counter[str] = Counter()
    for minute, shard in shards_by_minute:
        counts[minute] += shard.counts_by_type.get(event_type, 0)
    return [
        {"minute": parse_minute(minute).isoformat(), "count": count}
        for minute, count in sorted(counts.items())
        if count
    ]
