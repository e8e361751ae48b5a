"""Use case: take a batch, keep the valid events, publish them all or none, and say what became of each."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from contracts.telemetry import EventRejection, TelemetryEvent
from ingest.domain import judge_events, read_batch


class PublishFailedError(Exception):
    """The sidecar did not publish every event of the batch (or could not be reached): nothing counts as accepted."""


class TelemetryPublisher(Protocol):
    async def publish(self, events: Sequence[TelemetryEvent]) -> None:
        """Publishes every event, or raises PublishFailedError if any one of them was not published."""
        ...


@dataclass(frozen=True)
class IngestBatch:
    """Command: the raw body of `POST /events`, already within the size limit and declared as JSON."""

    body: bytes


@dataclass(frozen=True)
class IngestOutcome:
    accepted: tuple[TelemetryEvent, ...]
    rejected: tuple[EventRejection, ...]


class Ingest:
    """Judges each event of a batch on its own, then hands the valid ones to the publisher in one bulk call.

    `on_events(outcome, count)` hears how many events were accepted (published), rejected (invalid) or failed
    (valid but not published) per batch; a batch that is no batch at all counts nothing.
    """

    def __init__(
        self,
        publisher: TelemetryPublisher,
        *,
        max_events: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_events: Callable[[str, int], None] = lambda outcome, count: None,
    ) -> None:
        self._publisher = publisher
        self._max_events = max_events
        self._clock = clock
        self._on_events = on_events

    async def ingest(self, command: IngestBatch) -> IngestOutcome:
        """Raises MalformedBatchError or TooManyEventsError for a body that is no batch, PublishFailedError when
        the valid events could not all be published (then none of them is reported accepted)."""
        judged = judge_events(read_batch(command.body, self._max_events), self._clock())
        if judged.accepted:
            # All or nothing towards the client: a partial failure is reported as a failure of the whole batch.
            # Resending the whole batch is safe because consumers dedupe on the event id (the CloudEvent id),
            # so the events that did get through the first time are not counted twice.
            try:
                await self._publisher.publish(judged.accepted)
            except PublishFailedError:
                self._on_events("failed", len(judged.accepted))
                raise
        self._on_events("accepted", len(judged.accepted))
        self._on_events("rejected", len(judged.rejected))
        return IngestOutcome(judged.accepted, judged.rejected)
