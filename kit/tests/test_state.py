"""The state store against a fake sidecar (httpx.MockTransport): Dapr's state API as observed on daprd 1.18."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic_settings import SettingsConfigDict

from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import (
    ConcurrencyConflictError,
    ContentionError,
    DaprStateStore,
    DocumentUpdates,
    OutcomeUnknownError,
    SidecarError,
    StateStoreSettings,
    StoreUnavailableError,
    Versioned,
    send_to_sidecar,
    update_document,
    update_model,
)
from sidecart_kit.testing import FakeSleep, FakeStateStore, fake_sidecar_client

Handler = Callable[[httpx.Request], httpx.Response]
SAVE_FAILED = {"errorCode": "ERR_STATE_SAVE", "message": "failed to set key app||product:A-1"}


def _store(handler: Handler, seen: list[httpx.Request] | None = None, **options: float) -> DaprStateStore:
    def recording(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return handler(request)

    return DaprStateStore(fake_sidecar_client(recording), "app-store", **options)  # type: ignore[arg-type]


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def _save_fails_then_reads(save: Handler, stored: httpx.Response) -> Handler:
    """A sidecar whose write fails as `save` says, and whose next read answers `stored`."""

    def handler(request: httpx.Request) -> httpx.Response:
        return save(request) if request.method == "POST" else stored

    return handler


async def test_absent_key_is_none_and_keys_are_quoted() -> None:
    seen: list[httpx.Request] = []
    assert await _store(lambda request: httpx.Response(204), seen).get("user:a/b@example.com") is None
    [request] = seen
    assert request.url.raw_path.split(b"?")[0] == b"/v1.0/state/app-store/user%3Aa%2Fb%40example.com"
    assert request.url.params["consistency"] == "strong"


async def test_a_document_is_read_with_its_etag() -> None:
    answer = httpx.Response(200, json={"sku": "A-1"}, headers={"etag": "7"})
    assert await _store(lambda request: answer).get("product:A-1") == Versioned({"sku": "A-1"}, "7")


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(500, json={"errorCode": "ERR_STATE_GET", "message": "redis down"}),
        lambda request: httpx.Response(400, json={"errorCode": "ERR_STATE_STORE_NOT_FOUND", "message": "no"}),
        lambda request: httpx.Response(200, content=b"{not json", headers={"etag": "1"}),
        lambda request: httpx.Response(200, json={"sku": "A-1"}),  # no ETag: nothing safe to write over
        _raise(httpx.ConnectError("refused")),
        _raise(httpx.ReadTimeout("slow")),
    ],
)
async def test_read_failures_are_store_unavailable(handler: Handler) -> None:
    with pytest.raises(StoreUnavailableError):
        await _store(handler).get("product:A-1")


async def test_bulk_read_returns_the_documents_found() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(
        200,
        json=[
            {"key": "product:A-1", "data": {"sku": "A-1"}, "etag": "3"},
            {"key": "product:B-1"},
            {"key": "product:C-1", "data": '{"sku": "C-1"}', "etag": "4"},  # a store that keeps bytes
        ],
    )
    found = await _store(lambda request: answer, seen).get_many(["product:A-1", "product:B-1", "product:C-1"])
    assert found == {
        "product:A-1": Versioned({"sku": "A-1"}, "3"),
        "product:C-1": Versioned({"sku": "C-1"}, "4"),
    }
    assert seen[0].url.path == "/v1.0/state/app-store/bulk"
    assert json.loads(seen[0].content)["keys"] == ["product:A-1", "product:B-1", "product:C-1"]


async def test_reads_that_start_together_share_one_bulk_read() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(
        200, json=[{"key": "inbox:1", "data": {"n": 1}, "etag": "7"}, {"key": "inbox:2"}, {"key": "inbox:3"}]
    )
    store = _store(lambda request: answer, seen)

    found = await asyncio.gather(*(store.get(key) for key in ("inbox:1", "inbox:2", "inbox:1", "inbox:3")))

    assert found == [Versioned({"n": 1}, "7"), None, Versioned({"n": 1}, "7"), None]
    assert [(request.method, request.url.path) for request in seen] == [("POST", "/v1.0/state/app-store/bulk")]
    assert json.loads(seen[0].content)["keys"] == ["inbox:1", "inbox:2", "inbox:3"]


async def test_a_read_that_starts_alone_is_a_single_read() -> None:
    seen: list[httpx.Request] = []
    store = _store(lambda request: httpx.Response(200, json={"n": 1}, headers={"etag": "2"}), seen)

    assert await store.get("inbox:1") == Versioned({"n": 1}, "2")
    assert await store.get("inbox:2") == Versioned({"n": 1}, "2")
    assert [(request.method, request.url.path) for request in seen] == [
        ("GET", "/v1.0/state/app-store/inbox:1"),
        ("GET", "/v1.0/state/app-store/inbox:2"),
    ]


async def test_a_failed_shared_read_fails_every_reader() -> None:
    store = _store(lambda request: httpx.Response(500, json={"errorCode": "ERR_STATE_BULK_GET", "message": "down"}))

    results = await asyncio.gather(store.get("inbox:1"), store.get("inbox:2"), return_exceptions=True)

    assert [type(result) for result in results] == [StoreUnavailableError, StoreUnavailableError]


async def test_a_cancelled_reader_leaves_the_others_their_answers() -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=[{"key": key, "data": {"k": key}, "etag": "1"} for key in ("a", "b")])

    store = DaprStateStore(fake_sidecar_client(slow), "app-store")
    first, second = asyncio.create_task(store.get("a")), asyncio.create_task(store.get("b"))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()

    assert await second == Versioned({"k": "b"}, "1")
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_the_first_reader_cancelled_while_gathering_leaves_the_others_their_answers() -> None:
    answer = httpx.Response(200, json=[{"key": "b", "data": {"k": "b"}, "etag": "1"}])
    store = _store(lambda request: answer)
    first, second = asyncio.create_task(store.get("a")), asyncio.create_task(store.get("b"))
    await asyncio.sleep(0)  # both started: the first waits its one turn, the second has joined it
    first.cancel()

    assert await asyncio.wait_for(second, timeout=5) == Versioned({"k": "b"}, "1")
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_bulk_reads_go_in_chunks() -> None:
    seen: list[httpx.Request] = []
    await _store(lambda request: httpx.Response(200, json=[]), seen, bulk_chunk=2).get_many(list("abcde"))
    assert sorted(len(json.loads(request.content)["keys"]) for request in seen) == [1, 2, 2]


async def test_bulk_read_of_nothing_asks_nothing() -> None:
    seen: list[httpx.Request] = []
    assert await _store(lambda request: httpx.Response(500), seen).get_many([]) == {}
    assert seen == []


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(200, json=[{"key": "product:A-1", "error": "redis down"}]),
        lambda request: httpx.Response(500, json={"errorCode": "ERR_STATE_BULK_GET", "message": "down"}),
        lambda request: httpx.Response(200, json={"not": "a list"}),
        _raise(httpx.ConnectError("refused")),
    ],
)
async def test_bulk_read_failures_are_store_unavailable(handler: Handler) -> None:
    with pytest.raises(StoreUnavailableError):
        await _store(handler).get_many(["product:A-1"])


async def test_save_sends_the_etag_with_first_write_concurrency() -> None:
    seen: list[httpx.Request] = []
    await _store(lambda request: httpx.Response(204), seen).save("product:A-1", {"sku": "A-1"}, "7")
    [request] = seen
    assert (request.method, request.url.path) == ("POST", "/v1.0/state/app-store")
    assert json.loads(request.content) == [
        {
            "key": "product:A-1",
            "value": {"sku": "A-1"},
            "etag": "7",
            "options": {"concurrency": "first-write", "consistency": "strong"},
        }
    ]


async def test_first_save_sends_no_etag_so_it_only_inserts() -> None:
    seen: list[httpx.Request] = []
    await _store(lambda request: httpx.Response(204), seen).save("catalogue", {"skus": []}, None)
    [item] = json.loads(seen[0].content)
    assert "etag" not in item


async def test_a_stale_etag_is_a_conflict() -> None:
    body = {"errorCode": "ERR_STATE_SAVE", "message": "possible etag mismatch. error from state store: ..."}
    with pytest.raises(ConcurrencyConflictError):
        await _store(lambda request: httpx.Response(409, json=body)).save("product:A-1", {}, "7")


async def test_an_insert_over_an_existing_key_is_a_conflict_even_when_reported_as_500() -> None:
    # daprd 1.18 on Redis: a first-write save (no ETag) over an existing key answers 500 ERR_STATE_SAVE.
    handler = _save_fails_then_reads(
        lambda request: httpx.Response(500, json=SAVE_FAILED), httpx.Response(200, json={}, headers={"etag": "1"})
    )
    with pytest.raises(ConcurrencyConflictError):
        await _store(handler).save("product:A-1", {}, None)


async def test_a_failed_insert_with_the_key_still_absent_is_an_outage() -> None:
    handler = _save_fails_then_reads(lambda request: httpx.Response(500, json=SAVE_FAILED), httpx.Response(204))
    with pytest.raises(StoreUnavailableError):
        await _store(handler).save("product:A-1", {}, None)


@pytest.mark.parametrize(("stored_etag", "error"), [("7", StoreUnavailableError), ("8", ConcurrencyConflictError)])
async def test_a_failed_update_is_an_outage_unless_another_version_is_stored(
    stored_etag: str, error: type[Exception]
) -> None:
    handler = _save_fails_then_reads(
        lambda request: httpx.Response(500, json=SAVE_FAILED),
        httpx.Response(200, json={}, headers={"etag": stored_etag}),
    )
    with pytest.raises(error):
        await _store(handler).save("product:A-1", {}, "7")


async def test_a_write_whose_answer_was_lost_is_decided_by_reading_again() -> None:
    # The write may have landed: a new version means "read again and decide", which is safe as changes are
    # idempotent; the same version means nothing was written.
    landed = _save_fails_then_reads(
        _raise(httpx.ReadTimeout("slow")), httpx.Response(200, json={}, headers={"etag": "8"})
    )
    with pytest.raises(ConcurrencyConflictError):
        await _store(landed).save("product:A-1", {}, "7")
    lost = _save_fails_then_reads(
        _raise(httpx.ConnectError("refused")), httpx.Response(200, json={}, headers={"etag": "7"})
    )
    with pytest.raises(StoreUnavailableError):
        await _store(lost).save("product:A-1", {}, "7")


async def test_a_failed_write_that_cannot_be_checked_is_an_outage() -> None:
    handler = _save_fails_then_reads(lambda request: httpx.Response(500, json=SAVE_FAILED), httpx.Response(500))
    with pytest.raises(StoreUnavailableError):
        await _store(handler).save("product:A-1", {}, None)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(409, json={"errorCode": "ERR_STATE_DELETE"}), ConcurrencyConflictError),
        (httpx.Response(500, json={"errorCode": "ERR_STATE_DELETE"}), StoreUnavailableError),
    ],
)
async def test_delete_failures(answer: httpx.Response, error: type[Exception]) -> None:
    with pytest.raises(error):
        await _store(lambda request: answer).delete("product:A-1", "3")


async def test_delete_sends_the_etag_as_if_match() -> None:
    seen: list[httpx.Request] = []
    await _store(lambda request: httpx.Response(204), seen).delete("product:A-1", "3")
    assert (seen[0].method, seen[0].headers["if-match"]) == ("DELETE", "3")


async def test_calls_beyond_the_limit_wait_their_turn_then_give_up() -> None:
    in_flight, most = 0, 0
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1
        return httpx.Response(204)

    store = DaprStateStore(fake_sidecar_client(slow), "app-store", max_concurrent_calls=2, queue_timeout=0.05)
    calls = [asyncio.create_task(store.delete(f"product:A-{n}")) for n in range(3)]
    await asyncio.sleep(0.2)
    assert most == 2
    with pytest.raises(StoreUnavailableError, match="waiting"):
        await calls[2]
    release.set()
    assert await asyncio.gather(*calls[:2]) == [None, None]


async def test_update_document_reads_decides_and_writes_over_the_version_read() -> None:
    store = FakeStateStore()
    await store.save("counter", {"n": 1}, None)

    def add_one(document: Any) -> tuple[Any, int]:
        n = (document or {"n": 0})["n"] + 1
        return {"n": n}, n

    assert await update_document(store, "counter", add_one, retry=RetryPolicy()) == 2
    assert await update_document(store, "fresh", add_one, retry=RetryPolicy()) == 1
    assert store.document("counter") == {"n": 2}
    assert await update_document(store, "counter", lambda document: (None, "unchanged"), retry=RetryPolicy()) == (
        "unchanged"
    )
    assert store.writes == 3


async def test_update_document_decides_again_after_a_conflict_and_gives_up_in_the_end() -> None:
    store, sleep = FakeStateStore(), FakeSleep()
    await store.save("k", {"v": 0}, None)
    racing = iter(range(1, 4))

    def decide_while_another_writer_wins(document: Any) -> tuple[Any, None]:
        stored = store.documents["k"]
        store.documents["k"] = ({"v": next(racing, 99)}, stored[1] + 1)  # someone else wrote meanwhile
        return {"v": -1}, None

    with pytest.raises(ContentionError):
        await update_document(store, "k", decide_while_another_writer_wins, retry=RetryPolicy(attempts=3), sleep=sleep)
    assert len(sleep.delays) == 3
    assert store.conflicts == 3


@dataclass(frozen=True)
class Counter:
    n: int

    @classmethod
    def from_document(cls, document: Any) -> "Counter":
        return cls(int(document["n"]))

    def to_document(self) -> dict[str, Any]:
        return {"n": self.n}


async def test_update_model_parses_decides_and_writes_the_object_back() -> None:
    store = FakeStateStore()

    def bump(counter: Counter | None) -> tuple[Counter | None, int]:
        updated = Counter((counter.n if counter else 0) + 1)
        return updated, updated.n

    assert await update_model(store, "c", Counter.from_document, bump, retry=RetryPolicy()) == 1
    assert await update_model(store, "c", Counter.from_document, bump, retry=RetryPolicy()) == 2
    assert await update_model(store, "c", Counter.from_document, lambda counter: (None, "kept"), retry=RetryPolicy())
    assert store.document("c") == {"n": 2}


async def test_concurrent_updates_of_one_key_queue_in_the_process_and_lose_nothing() -> None:
    store, sleep = FakeStateStore(), FakeSleep()
    store.interleave = True
    updates = DocumentUpdates(store, retry=RetryPolicy(attempts=2), sleep=sleep)

    def bump(counter: Counter | None) -> tuple[Counter | None, int]:
        updated = Counter((counter.n if counter else 0) + 1)
        return updated, updated.n

    results = await asyncio.gather(*(updates.update_model("c", Counter.from_document, bump) for _ in range(20)))
    assert sorted(results) == list(range(1, 21))
    assert store.document("c") == {"n": 20}
    assert store.conflicts == 0  # queued per key: no optimistic round was lost in this process
    assert len(updates.locks) == 0  # and no lock is kept once they are done
    assert await updates.update_document("c", lambda document: (None, document["n"])) == 20


async def test_bulk_reads_go_in_chunks_a_few_at_a_time() -> None:
    in_flight, most, sizes = 0, 0, []

    async def sidecar(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        keys = json.loads(request.content)["keys"]
        sizes.append(len(keys))
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=[{"key": key, "data": {"n": 1}, "etag": "1"} for key in keys])

    store = DaprStateStore(fake_sidecar_client(sidecar), "app-store", bulk_chunk=2, bulk_round_trips=2)
    keys = [f"t:{n}" for n in range(9)]
    found = await store.get_many(keys)
    assert found == {key: Versioned({"n": 1}, "1") for key in keys}
    assert sorted(sizes) == [1, 2, 2, 2, 2]
    assert most == 2


class DemoSettings(StateStoreSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    state_store: str = "demo-store"


def test_updates_that_lose_the_race_for_a_document_are_retried_as_the_settings_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert DemoSettings().update_retry() == RetryPolicy(attempts=8, backoff_seconds=0.02, backoff_max_seconds=0.5)
    monkeypatch.setenv("DEMO_UPDATE_ATTEMPTS", "40")
    monkeypatch.setenv("DEMO_UPDATE_BACKOFF_SECONDS", "0.01")
    assert DemoSettings().update_retry() == RetryPolicy(attempts=40, backoff_seconds=0.01, backoff_max_seconds=0.5)


async def test_state_store_settings_describe_the_store_and_its_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SIDECAR_MAX_CONCURRENT_CALLS", "1")
    monkeypatch.setenv("DEMO_STATE_TIMEOUT_SECONDS", "0.01")
    monkeypatch.setenv("DAPR_HTTP_PORT", "3999")  # the kit's ServiceSettings are read as well
    settings = DemoSettings()
    assert (settings.state_store, settings.dapr_http_port) == ("demo-store", 3999)
    seen: list[str] = []
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        await release.wait()
        return httpx.Response(204)

    store = settings.dapr_state_store(fake_sidecar_client(slow))
    first = asyncio.create_task(store.delete("a"))
    await asyncio.sleep(0)
    with pytest.raises(StoreUnavailableError):  # one call at a time; the second waits 0.01 s, then gives up
        await store.delete("b")
    release.set()
    await first
    assert seen == ["/v1.0/state/demo-store/a"]


async def test_state_store_settings_size_the_bulk_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_BULK_GET_CHUNK", "2")
    bodies: list[Any] = []

    def bulk(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=[])

    store = DemoSettings().dapr_state_store(fake_sidecar_client(bulk))
    assert await store.get_many(["a", "b", "c", "d", "e"]) == {}
    assert sorted(len(body["keys"]) for body in bodies) == [1, 2, 2]


@pytest.mark.parametrize(
    ("error", "outcome_unknown"),
    [(httpx.ConnectError("refused"), False), (httpx.ReadTimeout("slow"), True)],
    ids=["never-sent", "sent-then-timed-out"],
)
async def test_a_call_that_failed_on_the_way_says_whether_it_may_have_landed(
    error: httpx.HTTPError, outcome_unknown: bool
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    async with fake_sidecar_client(fail) as client:
        with pytest.raises(StoreUnavailableError) as raised:
            await send_to_sidecar(client, "POST", "/state/s/transaction", json={"operations": []})
    assert isinstance(raised.value, OutcomeUnknownError) is outcome_unknown


async def test_a_call_the_sidecar_answered_is_returned_whatever_its_status() -> None:
    async with fake_sidecar_client(lambda request: httpx.Response(500, json=SAVE_FAILED)) as client:
        response = await send_to_sidecar(client, "POST", "/state/s", json=[])
    error = SidecarError("save e-mail claim", response)
    assert (error.status, error.code, str(error)) == (500, "ERR_STATE_SAVE", "save e-mail claim: 500 ERR_STATE_SAVE")
    assert "product:A-1" not in str(error)  # Dapr's message quotes the key: left out
    assert SidecarError("get secret", httpx.Response(404, text="no")).code == "no error code"
