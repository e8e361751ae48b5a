"""Use cases: record the notice an event gives its user exactly once, and list a user's notices."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, TypeVar
from uuid import UUID

from notifications.domain import Inbox, Notice, NotifiableEvent, notice_for
from sidecart_kit.retry import RetryPolicy

Result = TypeVar("Result")


@dataclass(frozen=True)
class VersionedInbox:
    """An inbox and the ETag it was read with (None: no document stored yet)."""

    inbox: Inbox
    etag: str | None


class InboxRepository(Protocol):
    async def get(self, user_id: UUID) -> VersionedInbox:
        """The user's inbox; an empty one with etag None when nothing is stored. Raises StoreUnavailableError."""
        ...

    async def update(
        self,
        user_id: UUID,
        decide: Callable[[Inbox], tuple[Inbox | None, Result]],
        *,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]],
    ) -> Result:
        """Reads the user's inbox (an empty one when nothing is stored), lets `decide` turn it into the inbox to
        write (None: write nothing) and a result, and writes it over the version read; on a conflict, all of it
        again after a back-off.

        Raises ContentionError (a StoreUnavailableError) after `retry.attempts` conflicts, StoreUnavailableError
        on any other failure.
        """
        ...


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
        def decide(inbox: Inbox) -> tuple[Inbox | None, Outcome]:
            if inbox.has_handled(notice):
                return None, Outcome.ALREADY_HANDLED
            updated = inbox.deliver(
                notice,
                max_notices=self._limits.max_notices,
                max_remembered_events=self._limits.max_remembered_events,
            )
            return updated, Outcome.RECORDED

        return await self._repository.update(user_id, decide, retry=self._retry, sleep=self._sleep)
