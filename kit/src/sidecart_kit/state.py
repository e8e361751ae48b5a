"""JSON documents with ETags in one Dapr state store, over the sidecar's HTTP state API.

Single-key, ETag-guarded, first-write writes and bulk reads only: no transactions and no store-specific queries, so
it works on every Dapr state store that supports ETags (Redis, PostgreSQL, SQLite, ...). Keys are quoted into the
URL, so any key (an e-mail address, a key with a slash) reaches the store as it is.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import Field

from sidecart_kit.locks import KeyedLocks
from sidecart_kit.logs import get_logger
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.sidecar import ServiceSettings, dapr_error, dapr_error_code

log = get_logger(__name__)

# first-write: with an ETag, only over that version; without one, only if the key does not exist yet. Strong
# consistency: a write is acknowledged by the store's quorum, a read sees it.
FIRST_WRITE = {"concurrency": "first-write", "consistency": "strong"}


class StoreUnavailableError(Exception):
    """The store (or the sidecar in front of it) did not answer as it should: retrying later may work."""


class ConcurrencyConflictError(Exception):
    """The document changed since it was read (or was created meanwhile): read it again and decide again."""


class ContentionError(StoreUnavailableError):
    """A document kept changing under every attempt to update it: too many writers at once; retry later."""


class OutcomeUnknownError(StoreUnavailableError):
    """A call reached the sidecar but failed without saying what was done (no answer came back, or an engine failed
    after it may have acted): what it asked for may have been carried out anyway."""


class SidecarError(StoreUnavailableError):
    """The sidecar answered a call with an error status: refused or failed, not left in doubt."""

    def __init__(self, operation: str, response: httpx.Response) -> None:
        self.status = response.status_code
        self.code = dapr_error_code(response) or "no error code"
        # Dapr's own message is left out on purpose: it quotes state keys, and keys may hold personal data.
        super().__init__(f"{operation}: {self.status} {self.code}")


# Failures before a request reached the sidecar: nothing was done.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


async def send_to_sidecar(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One call to the sidecar's API, whatever its answer; StoreUnavailableError when the call never reached the
    sidecar (nothing was done), OutcomeUnknownError when it did but no answer came back."""
    try:
        return await client.request(method, url, **kwargs)
    except NOT_SENT as error:
        raise StoreUnavailableError(f"sidecar unreachable: {error!r}") from error
    except httpx.HTTPError as error:
        raise OutcomeUnknownError(f"sidecar call failed: {error!r}") from error


@dataclass(frozen=True)
class Versioned:
    """A stored document and the ETag of the version read (a bulk read from a store that gives none: None)."""

    document: Any
    etag: str | None


class StateStore(Protocol):
    """Documents with ETags: what handlers depend on (DaprStateStore in the app, FakeStateStore in tests)."""

    async def get(self, key: str) -> Versioned | None: ...

    async def save(self, key: str, document: Any, etag: str | None) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]: ...

    async def delete(self, key: str, etag: str | None = None) -> None: ...


def state_key_path(store: str, key: str) -> str:
    return f"/state/{store}/{quote(key, safe='')}"


class DaprStateStore:
    """Documents with ETags in one state store. At most `max_concurrent_calls` calls to the sidecar at once; more
    wait their turn for up to `queue_timeout` seconds (then StoreUnavailableError), where cancelling is harmless.

    Reads of single keys that start together (the events of one bulk delivery, handled side by side) share one bulk
    read: the first waits one turn of the event loop for the others, then asks for all their keys at once. A read
    that starts alone costs that one turn and goes as a single read.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        store_name: str,
        *,
        max_concurrent_calls: int = 64,
        queue_timeout: float = 5.0,
        bulk_chunk: int = 500,
        bulk_parallelism: int = 16,
        bulk_round_trips: int = 8,
    ) -> None:
        self._client = client
        self._store = store_name
        self._slots = asyncio.Semaphore(max_concurrent_calls)
        self._queue_timeout = queue_timeout
        self._bulk_chunk = bulk_chunk
        self._bulk_parallelism = bulk_parallelism
        # Bulk reads of many chunks take at most this many call slots at once, leaving the rest to other calls.
        self._bulk_round_trips = asyncio.Semaphore(bulk_round_trips)
        # The reads gathering for the next shared read: each key's waiters, in the order the keys were asked for.
        self._gathering: dict[str, list[asyncio.Future[Versioned | None]]] | None = None
        self._shared_reads: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self._store

    @asynccontextmanager
    async def _slot(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise StoreUnavailableError(f"{what}: too many calls to the sidecar waiting") from exc
        try:
            yield
        finally:
            self._slots.release()

    async def get(self, key: str) -> Versioned | None:
        """The document stored at `key` with its ETag, or None when there is none."""
        if self._gathering is not None:  # another read is gathering company: join it
            waiter: asyncio.Future[Versioned | None] = asyncio.get_running_loop().create_future()
            self._gathering.setdefault(key, []).append(waiter)
            return await waiter
        gathering: dict[str, list[asyncio.Future[Versioned | None]]] = {key: []}
        self._gathering = gathering
        try:
            await asyncio.sleep(0)  # one turn of the loop: reads started alongside this one join it
        except asyncio.CancelledError:
            self._gathering = None
            self._read_in_a_task({k: futures for k, futures in gathering.items() if futures})  # those who joined
            raise
        self._gathering = None
        if len(gathering) == 1 and not gathering[key]:
            return await self._get_one(key)
        own: asyncio.Future[Versioned | None] = asyncio.get_running_loop().create_future()
        gathering[key].append(own)
        self._read_in_a_task(gathering)
        return await own

    def _read_in_a_task(self, waiters: dict[str, list[asyncio.Future[Versioned | None]]]) -> None:
        """A task of its own, so that cancelling one reader does not leave the others waiting."""
        if not waiters:
            return
        task = asyncio.create_task(self._read_for(waiters))
        self._shared_reads.add(task)
        task.add_done_callback(self._shared_reads.discard)

    async def _read_for(self, waiters: dict[str, list[asyncio.Future[Versioned | None]]]) -> None:
        """One bulk read of the waiters' keys; each waiter gets its key's document, or the read's failure."""
        try:
            found = await self.get_many(list(waiters))
        except Exception as exc:  # handed to every waiter, who raises it
            for futures in waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for key, futures in waiters.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(key))

    async def _get_one(self, key: str) -> Versioned | None:
        try:
            async with self._slot(f"reading {key}"):
                response = await self._client.get(state_key_path(self._store, key), params={"consistency": "strong"})
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"reading {key}: {exc!r}") from exc
        if response.status_code == 204 or (response.status_code == 200 and not response.content):
            return None
        if response.status_code != 200:
            raise StoreUnavailableError(f"reading {key}: {dapr_error(response)}")
        etag = response.headers.get("etag")
        if not etag:
            raise StoreUnavailableError(f"reading {key}: the store gave no ETag")
        try:
            return Versioned(response.json(), etag)
        except ValueError as exc:
            raise StoreUnavailableError(f"reading {key}: the stored value is not JSON") from exc

    async def save(self, key: str, document: Any, etag: str | None) -> None:
        """Writes `document` over the version `etag` (None: only if `key` holds nothing yet).

        Raises ConcurrencyConflictError when that version is no longer the stored one, StoreUnavailableError when
        nothing was written for another reason.
        """
        item: dict[str, Any] = {"key": key, "value": document, "options": FIRST_WRITE}
        if etag is not None:
            item["etag"] = etag
        try:
            async with self._slot(f"writing {key}"):
                response = await self._client.post(f"/state/{self._store}", json=[item])
        except httpx.HTTPError as exc:
            # Maybe not sent, maybe written: what the key holds now tells.
            await self._decide_after_failure(key, etag, f"writing {key}: {exc!r}")
            return
        if response.is_success:
            return
        if response.status_code == 409:  # Dapr's answer to a stale ETag
            raise ConcurrencyConflictError(f"writing {key}: the stored version changed")
        await self._decide_after_failure(key, etag, f"writing {key}: {dapr_error(response)}")

    async def _decide_after_failure(self, key: str, etag: str | None, failure: str) -> None:
        """A failed conditional write is a lost race or an outage; a fresh read tells the two apart.

        Redis answers a first-write insert over an existing key with 500 ERR_STATE_SAVE, and a broken store looks
        the same. If the key now holds another version than the one written over, it was a race (or this write
        landed before its answer was lost): the caller reads again and decides again, which is safe when every
        change is idempotent. If it holds the same version (or is still absent), nothing was written: an outage.
        """
        current = await self._get_one(key)
        if (None if current is None else current.etag) != etag:
            raise ConcurrencyConflictError(f"{failure} (the stored version changed)")
        log.warning("state_write_failed", key=key, failure=failure)
        raise StoreUnavailableError(failure)

    async def delete(self, key: str, etag: str | None = None) -> None:
        headers = {"if-match": etag} if etag is not None else {}
        try:
            async with self._slot(f"deleting {key}"):
                response = await self._client.delete(state_key_path(self._store, key), headers=headers)
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"deleting {key}: {exc!r}") from exc
        if response.status_code == 409:
            raise ConcurrencyConflictError(f"deleting {key}: the stored version changed")
        if not response.is_success:
            raise StoreUnavailableError(f"deleting {key}: {dapr_error(response)}")

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        """The documents stored at `keys` (absent keys are left out), in round trips of `bulk_chunk` keys."""
        chunks = [list(keys[start : start + self._bulk_chunk]) for start in range(0, len(keys), self._bulk_chunk)]
        found: dict[str, Versioned] = {}
        for part in await asyncio.gather(*(self._bulk_get(chunk) for chunk in chunks)):
            found.update(part)
        return found

    async def _bulk_get(self, keys: list[str]) -> dict[str, Versioned]:
        """POST /v1.0/state/{store}/bulk: [{"key", "data", "etag"} | {"key", "error"}] in one round trip."""
        async with self._bulk_round_trips:
            return await self._bulk_round_trip(keys)

    async def _bulk_round_trip(self, keys: list[str]) -> dict[str, Versioned]:
        try:
            async with self._slot(f"reading {len(keys)} keys"):
                response = await self._client.post(
                    f"/state/{self._store}/bulk", json={"keys": keys, "parallelism": self._bulk_parallelism}
                )
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"reading {len(keys)} keys: {exc!r}") from exc
        if response.status_code != 200:
            raise StoreUnavailableError(f"reading {len(keys)} keys: {dapr_error(response)}")
        try:
            items: Any = response.json()
        except ValueError as exc:
            raise StoreUnavailableError("bulk read: the answer is not JSON") from exc
        if not isinstance(items, list):
            raise StoreUnavailableError("bulk read: the answer is not a list")
        found: dict[str, Versioned] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                continue
            if item.get("error"):
                raise StoreUnavailableError(f"reading {item['key']}: {str(item['error'])[:300]}")
            data, etag = item.get("data"), item.get("etag")
            if data is None:
                continue  # not stored
            if isinstance(data, str):  # stores that keep bytes hand JSON back as a string
                try:
                    data = json.loads(data)
                except ValueError:
                    log.error("document_not_json", key=item["key"])
                    continue
            found[item["key"]] = Versioned(data, str(etag) if etag else None)
        return found


class StateStoreSettings(ServiceSettings):
    """The settings of a service that keeps its documents in one state store (a subclass names its default)."""

    state_store: str
    # Calls to the state store at once; more wait their turn, at most state_timeout_seconds (then
    # StoreUnavailableError).
    sidecar_max_concurrent_calls: int = Field(default=64, ge=1)
    state_timeout_seconds: float = 5.0
    # Keys per bulk state read, and how many of those reads run at once (a read of many keys must not take every
    # call slot the other calls need).
    bulk_get_chunk: int = 500
    bulk_get_parallelism: int = 8
    # Optimistic-concurrency retries of an update that lost the race for its document (`update_retry`): each round at
    # most one writer wins, so a service with one hot document (a product's stock) allows more.
    update_attempts: int = Field(default=8, ge=1)
    update_backoff_seconds: float = Field(default=0.02, ge=0)
    update_backoff_max_seconds: float = Field(default=0.5, ge=0)

    def update_retry(self) -> RetryPolicy:
        return RetryPolicy(self.update_attempts, self.update_backoff_seconds, self.update_backoff_max_seconds)

    def dapr_state_store(self, client: httpx.AsyncClient) -> DaprStateStore:
        """The state store as these settings describe it, through the sidecar `client`."""
        return DaprStateStore(
            client,
            self.state_store,
            max_concurrent_calls=self.sidecar_max_concurrent_calls,
            queue_timeout=self.state_timeout_seconds,
            bulk_chunk=self.bulk_get_chunk,
            bulk_round_trips=self.bulk_get_parallelism,
        )


Result = TypeVar("Result")


class Document(Protocol):
    """A domain object kept as one JSON document."""

    def to_document(self) -> dict[str, Any]: ...


Model = TypeVar("Model", bound=Document)


async def update_document(
    store: StateStore,
    key: str,
    decide: Callable[[Any], tuple[Any, Result]],
    *,
    retry: RetryPolicy,
    locks: KeyedLocks | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Result:
    """Read `key`, let `decide` turn its document (None when absent) into the document to write (None: write
    nothing) and a result, and write it over the version read; on a conflict, all of it again after a back-off.

    `decide` must be pure: it runs again on every attempt. Under `locks` one update per key runs at a time in this
    process (the lock is released during the back-off, so others go on). Raises ContentionError after
    `retry.attempts` conflicts, StoreUnavailableError when the store fails.
    """
    for attempt in range(retry.attempts):
        async with locks.hold(key) if locks is not None else _no_lock():
            current = await store.get(key)
            updated, result = decide(None if current is None else current.document)
            if updated is None:
                return result
            try:
                await store.save(key, updated, None if current is None else current.etag)
            except ConcurrencyConflictError:
                pass
            else:
                return result
        await sleep(retry.delay(attempt))
    log.warning("contention_gave_up", key=key, attempts=retry.attempts)
    raise ContentionError(f"{key} kept changing over {retry.attempts} attempts")


async def update_model(
    store: StateStore,
    key: str,
    parse: Callable[[Any], Model],
    decide: Callable[[Model | None], tuple[Model | None, Result]],
    *,
    retry: RetryPolicy,
    locks: KeyedLocks | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Result:
    """update_document for a domain object: `parse` reads the stored document, `decide` works on the object, and
    the object it returns is written back with `to_document()`."""

    def on_document(document: Any) -> tuple[Any, Result]:
        updated, result = decide(None if document is None else parse(document))
        return (None if updated is None else updated.to_document()), result

    return await update_document(store, key, on_document, retry=retry, locks=locks, sleep=sleep)


class DocumentUpdates:
    """update_document and update_model on one store with one retry policy, one update per key at a time in this
    process: n calls racing on one document cost O(n^2) optimistic rounds, queued per key O(n) per process."""

    def __init__(
        self,
        store: StateStore,
        *,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._retry = retry
        self._sleep = sleep
        self.locks = KeyedLocks()

    async def update_document(self, key: str, decide: Callable[[Any], tuple[Any, Result]]) -> Result:
        return await update_document(self._store, key, decide, retry=self._retry, locks=self.locks, sleep=self._sleep)

    async def update_model(
        self,
        key: str,
        parse: Callable[[Any], Model],
        decide: Callable[[Model | None], tuple[Model | None, Result]],
    ) -> Result:
        return await update_model(
            self._store, key, parse, decide, retry=self._retry, locks=self.locks, sleep=self._sleep
        )


@asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield
