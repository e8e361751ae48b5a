"""Use cases: record the notice an event gives its user exactly once, and list a user's notices."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

import structlog

from notifications.domain import Inbox, Notice, NotifiableEvent, notice_for

log = structlog.get_logger("notifications.handlers")


class StoreUnavailableError(Exception):
    """The state store could not be read or written: a transient failure, worth redelivering the event."""


class ConcurrencyConflictError(Exception):
    """The inbox changed between read and write (stale ETag): read again and retry."""


@dataclass(frozen=True)
class VersionedInbox:
    """An inbox and the ETag it was read with (None: no document stored yet)."""

    inbox: Inbox
    etag: str | None


class InboxRepository(Protocol):
    async def get(self, user_id: UUID) -> VersionedInbox:
        """The user's inbox; an empty one with etag None when nothing is stored. Raises StoreUnavailableError."""
        ...

    async def save(self, user_id: UUID, inbox: Inbox, etag: str | None) -> None:
        """Writes only if the stored document still has `etag` (None: only if none exists yet).

        Raises ConcurrencyConflictError when it does not, StoreUnavailableError on any other failure.
        """
        ...


class SidecarHealth(Protocol):
    async def is_ready(self) -> bool: ...


class Outcome(StrEnum):
    RECORDED = "recorded"
    ALREADY_HANDLED = "already_handled"


@dataclass(frozen=True)
class RecordNotice:
    """Command: tell the user an event names what happened (welcome them, confirm or cancel their order)."""

    event_id: str
    event: NotifiableEvent


@dataclass(frozen=True)
class Limits:
    max_notices: int = 100
    max_remembered_events: int = 500


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    backoff_seconds: float = 0.02
    backoff_max_seconds: float = 0.5

    def delay(self, attempt: int) -> float:
        # Full jitter, so deliveries that collided once do not collide again in lockstep.
        return random.uniform(0, min(self.backoff_max_seconds, self.backoff_seconds * 2**attempt))  # noqa: S311


class Notifications:
    """Records notices once per event with read-modify-write under ETag optimistic concurrency."""

    def __init__(
        self,
        repository: InboxRepository,
        *,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._repository = repository
        self._limits = limits or Limits()
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep

    async def record(self, command: RecordNotice) -> Outcome:
        """Records the event's notice in its user's inbox, unless that event was recorded before."""
        notice = notice_for(command.event_id, command.event, self._clock())
        return await self._deliver(command.event.user_id, notice)

    async def list_notices(self, user_id: UUID) -> tuple[Notice, ...]:
        """The user's notices, newest first."""
        return (await self._repository.get(user_id)).inbox.notices

    async def _deliver(self, user_id: UUID, notice: Notice) -> Outcome:
        for attempt in range(self._retry.attempts):
            current = await self._repository.get(user_id)
            if current.inbox.has_handled(notice):
                return Outcome.ALREADY_HANDLED
            updated = current.inbox.deliver(
                notice,
                max_notices=self._limits.max_notices,
                max_remembered_events=self._limits.max_remembered_events,
            )
            try:
                await self._repository.save(user_id, updated, current.etag)
                return Outcome.RECORDED
            except ConcurrencyConflictError:
                pass
            except StoreUnavailableError:
                # Some stores (Redis among them) report a lost insert-only race as a plain failure, not a
                # conflict. Whether the document exists now tells the two apart: if it does, retry as a conflict.
                if current.etag is not None or (await self._repository.get(user_id)).etag is None:
                    raise
            log.info("inbox_conflict_retrying", user_id=str(user_id), event_id=notice.event_id, attempt=attempt + 1)
            await self._sleep(self._retry.delay(attempt))
        raise ConcurrencyConflictError(f"the inbox of {user_id} kept changing over {self._retry.attempts} attempts")
