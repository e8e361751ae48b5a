"""The signing-key cache, the API key cache, the authenticator and the route-to-app mapping, with fake ports."""

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

import gateway.domain
import gateway.handlers
from gateway.domain import (
    AnalyticsReport,
    ApiKeysUnavailableError,
    InvalidApiKeyError,
    InvalidTokenError,
    KeysUnavailableError,
    MissingTokenError,
    Principal,
    TokenPolicy,
    UnknownResourceError,
    UpstreamResponse,
    VerifiedToken,
)
from gateway.handlers import ApiKeys, Authenticator, Gateway, SigningKeys

POLICY = TokenPolicy(issuer="sidecart-users", audience="sidecart", leeway_seconds=10)


def _keys(source: Any, clock: Any, ttl: float = 300, min_refetch: float = 5) -> SigningKeys:
    return SigningKeys(source, ttl=ttl, min_refetch_interval=min_refetch, clock=clock)


# --- SigningKeys --------------------------------------------------------------------------------------------


async def test_keys_are_fetched_once_within_the_ttl(jwks_source: Any, clock: Any) -> None:
    keys = _keys(jwks_source, clock)
    for _ in range(3):
        await keys.find("key-1")
        clock.now += 100
    assert jwks_source.fetches == 1


async def test_keys_are_refetched_after_the_ttl(jwks_source: Any, clock: Any) -> None:
    keys = _keys(jwks_source, clock, ttl=300)
    await keys.find("key-1")
    clock.now += 301
    await keys.find("key-1")
    assert jwks_source.fetches == 2


async def test_unknown_kid_refetches_once_and_finds_a_rotated_key(
    jwks_source: Any, clock: Any, signer: Any, other_signer: Any
) -> None:
    keys = _keys(jwks_source, clock)
    await keys.find("key-1")
    clock.now += 10
    jwks_source.document = {"keys": [signer.jwk(), other_signer.jwk()]}  # users rotated in key-2
    assert await keys.find("key-2") is not None
    assert jwks_source.fetches == 2


async def test_junk_kids_cannot_make_the_gateway_hammer_users(jwks_source: Any, clock: Any) -> None:
    keys = _keys(jwks_source, clock, min_refetch=5)
    await keys.find("key-1")
    clock.now += 10
    for attempt in range(20):
        with pytest.raises(InvalidTokenError, match="signing key"):
            await keys.find(f"junk-{attempt}")
    assert jwks_source.fetches == 2  # the first load, and one refetch for all twenty junk kids


async def test_unknown_kid_refetches_again_once_the_interval_has_passed(jwks_source: Any, clock: Any) -> None:
    keys = _keys(jwks_source, clock, min_refetch=5)
    await keys.find("key-1")
    clock.now += 10
    with pytest.raises(InvalidTokenError):
        await keys.find("junk")
    clock.now += 6
    with pytest.raises(InvalidTokenError):
        await keys.find("junk")
    assert jwks_source.fetches == 3


async def test_no_keys_at_all_is_unavailable_not_invalid(jwks_source: Any, clock: Any) -> None:
    jwks_source.available = False
    with pytest.raises(KeysUnavailableError):
        await _keys(jwks_source, clock).find("key-1")


async def test_an_unusable_jwks_document_is_unavailable(jwks_source: Any, clock: Any) -> None:
    jwks_source.document = {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}
    with pytest.raises(KeysUnavailableError):
        await _keys(jwks_source, clock).find("key-1")


async def test_failed_fetches_are_rate_limited_too(jwks_source: Any, clock: Any) -> None:
    jwks_source.available = False
    keys = _keys(jwks_source, clock, min_refetch=5)
    for _ in range(5):
        with pytest.raises(KeysUnavailableError):
            await keys.find("key-1")
    assert jwks_source.fetches == 1
    clock.now += 6
    jwks_source.available = True
    assert await keys.find("key-1") is not None


async def test_cached_keys_stay_in_use_when_a_refresh_fails(jwks_source: Any, clock: Any) -> None:
    keys = _keys(jwks_source, clock, ttl=300)
    await keys.find("key-1")
    clock.now += 400
    jwks_source.available = False
    assert await keys.find("key-1") is not None
    assert jwks_source.fetches == 2


async def test_concurrent_requests_on_a_cold_cache_fetch_once(signer: Any, clock: Any) -> None:
    class SlowSource:
        fetches = 0

        async def fetch_jwks(self) -> object:
            self.fetches += 1
            await asyncio.sleep(0.01)
            return {"keys": [signer.jwk()]}

    source = SlowSource()
    keys = _keys(source, clock)
    await asyncio.gather(*(keys.find("key-1") for _ in range(20)))
    assert source.fetches == 1


# --- Authenticator ------------------------------------------------------------------------------------------


async def test_authenticator_accepts_a_valid_token(jwks_source: Any, clock: Any, signer: Any) -> None:
    authenticator = Authenticator(_keys(jwks_source, clock), POLICY)
    caller = await authenticator.authenticate(f"Bearer {signer.token(sub='user-42')}")
    assert caller == Principal(subject="user-42")


async def test_authenticator_refuses_a_token_signed_by_an_unpublished_key(
    jwks_source: Any, clock: Any, make_signer: Any
) -> None:
    impostor = make_signer("key-1")  # same kid, different key
    authenticator = Authenticator(_keys(jwks_source, clock), POLICY)
    with pytest.raises(InvalidTokenError, match="signature"):
        await authenticator.authenticate(f"Bearer {impostor.token()}")


async def test_a_token_signed_by_any_published_key_is_accepted(
    make_signer: Any, make_jwks_source: Any, clock: Any
) -> None:
    current, upcoming, previous = make_signer("current"), make_signer("next"), make_signer("previous")
    source = make_jwks_source(current, upcoming, previous)
    authenticator = Authenticator(_keys(source, clock), POLICY)

    for signer in (current, upcoming, previous):
        caller = await authenticator.authenticate(f"Bearer {signer.token(sub='user-42')}")
        assert caller == Principal(subject="user-42")
    assert source.fetches == 1


async def test_a_rotation_logs_no_one_out_and_a_key_never_published_stays_refused(
    make_signer: Any, make_jwks_source: Any, clock: Any
) -> None:
    first, second, third = make_signer("first"), make_signer("second"), make_signer("third")
    source = make_jwks_source(first, second)  # users signs with `first` and publishes `second` ahead
    authenticator = Authenticator(_keys(source, clock, ttl=300, min_refetch=5), POLICY)
    old_token = first.token(sub="user-1")
    await authenticator.authenticate(f"Bearer {old_token}")

    clock.now += 60
    source.document = {"keys": [second.jwk(), third.jwk(), first.jwk()]}  # rotated: current, next, previous
    await authenticator.authenticate(f"Bearer {second.token(sub='user-1')}")
    assert source.fetches == 1  # the key published ahead was already held: no fetch at the moment of rotation

    await authenticator.authenticate(f"Bearer {third.token(sub='user-1')}")  # a second rotation, unseen: one refetch
    assert source.fetches == 2
    await authenticator.authenticate(f"Bearer {old_token}")  # still published, as the previous key

    clock.now += 10
    for _ in range(10):
        with pytest.raises(InvalidTokenError, match="signing key"):
            await authenticator.authenticate(f"Bearer {make_signer('never-published').token(sub='user-1')}")
    assert source.fetches == 3  # one refetch for all ten: an attacker cannot make the gateway hammer users


async def test_a_key_users_stopped_publishing_is_refused_once_the_cache_refreshes(
    make_signer: Any, make_jwks_source: Any, clock: Any
) -> None:
    retired, current = make_signer("retired"), make_signer("current")
    source = make_jwks_source(current, retired)
    authenticator = Authenticator(_keys(source, clock, ttl=300), POLICY)
    token = retired.token(sub="user-1")
    await authenticator.authenticate(f"Bearer {token}")

    source.document = {"keys": [current.jwk()]}
    clock.now += 301
    with pytest.raises(InvalidTokenError, match="signing key"):
        await authenticator.authenticate(f"Bearer {token}")


async def test_a_token_that_verified_is_accepted_again_without_its_signature_checked_while_it_holds(
    jwks_source: Any, clock: Any, signer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real_verify = gateway.domain.verify_token

    def counting_verify(token: str, key: Any, policy: TokenPolicy) -> Any:
        checked.append(token)
        return real_verify(token, key, policy)

    monkeypatch.setattr(gateway.handlers, "verify_token", counting_verify)
    now = [time.time()]
    authenticator = Authenticator(_keys(jwks_source, clock), POLICY, remembered=2, clock=lambda: now[0])
    first, second, third = (signer.token(sub=f"user-{n}", exp=int(now[0]) + 60) for n in range(3))

    for _ in range(3):
        assert await authenticator.authenticate(f"Bearer {first}") == Principal(subject="user-0")
    assert checked == [first]
    await authenticator.authenticate(f"Bearer {second}")
    await authenticator.authenticate(f"Bearer {third}")  # only two are remembered: the oldest, `first`, goes
    await authenticator.authenticate(f"Bearer {first}")
    assert checked == [first, second, third, first]

    now[0] += 60 + POLICY.leeway_seconds  # past exp and its leeway: no longer taken from memory, checked again
    await authenticator.authenticate(f"Bearer {first}")
    assert checked == [first, second, third, first, first]

    forgetful = Authenticator(_keys(jwks_source, clock), POLICY, remembered=0)  # remembers nothing: checks every time
    for _ in range(2):
        await forgetful.authenticate(f"Bearer {second}")
    assert checked[-2:] == [second, second]


async def test_a_remembered_token_is_checked_again_once_its_key_is_no_longer_the_one_published(
    make_signer: Any, make_jwks_source: Any, clock: Any
) -> None:
    genuine = make_signer("key-1")
    source = make_jwks_source(genuine)
    authenticator = Authenticator(_keys(source, clock, ttl=300), POLICY)
    token = genuine.token(sub="user-1")
    await authenticator.authenticate(f"Bearer {token}")

    source.document = {"keys": [make_signer("key-1").jwk()]}  # the kid now names another key
    clock.now += 301
    with pytest.raises(InvalidTokenError, match="signature"):
        await authenticator.authenticate(f"Bearer {token}")


def test_a_verified_token_holds_between_its_times_with_the_leeway() -> None:
    token = VerifiedToken(Principal(subject="u"), issued_at=100, expires_at=200, not_before=150)
    assert [token.still_valid(now, 10) for now in (139, 140, 209, 210)] == [False, True, True, False]
    assert not replace(token, not_before=None, issued_at=300).still_valid(250, 10)  # issued in the future


async def test_malformed_and_unsigned_tokens_never_cost_a_fetch(
    jwks_source: Any, clock: Any, forge: Any, claims: Any
) -> None:
    authenticator = Authenticator(_keys(jwks_source, clock), POLICY)
    for header in (None, "Bearer junk", f"Bearer {forge({'alg': 'none', 'kid': 'key-1'}, claims(), None)}"):
        with pytest.raises((MissingTokenError, InvalidTokenError)):
            await authenticator.authenticate(header)
    assert jwks_source.fetches == 0


# --- ApiKeys -------------------------------------------------------------------------------------------------

API_KEY = "k-live-0123456789"


async def test_api_keys_are_cached_for_the_ttl(key_source: Any, clock: Any) -> None:
    keys = ApiKeys(key_source, ttl=60, retry_interval=2, clock=clock)
    await keys.verify(API_KEY)
    await keys.verify("k-other")
    with pytest.raises(InvalidApiKeyError):
        await keys.verify("nope")
    assert key_source.fetches == 1
    key_source.value = "k-rotated"
    clock.now += 61
    with pytest.raises(InvalidApiKeyError):
        await keys.verify(API_KEY)  # revoked: gone once the cache expires
    await keys.verify("k-rotated")
    assert key_source.fetches == 2


async def test_a_failing_secret_store_is_asked_again_only_after_the_retry_interval(key_source: Any, clock: Any) -> None:
    keys = ApiKeys(key_source, ttl=60, retry_interval=2, clock=clock)
    key_source.available = False
    for _ in range(3):
        with pytest.raises(ApiKeysUnavailableError):
            await keys.verify(API_KEY)
    assert key_source.fetches == 1
    key_source.available = True
    clock.now += 2
    await keys.verify(API_KEY)


async def test_an_empty_secret_accepts_no_key(make_key_source: Any, clock: Any) -> None:
    keys = ApiKeys(make_key_source(" , "), ttl=60, retry_interval=2, clock=clock)
    with pytest.raises(InvalidApiKeyError):
        await keys.verify("")


# --- Gateway (routing) --------------------------------------------------------------------------------------


HEADERS = {"accept": "application/json", "content-type": "application/json"}


async def test_sign_up_goes_to_users_post_users(upstream: Any, gateway: Gateway) -> None:
    await gateway.sign_up(b'{"email": "a@example.com"}', HEADERS)
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path, request.body) == (
        "users",
        "POST",
        "users",
        b'{"email": "a@example.com"}',
    )
    assert request.headers == HEADERS


async def test_login_goes_to_users_post_auth_token(upstream: Any, gateway: Gateway) -> None:
    await gateway.issue_token(b"{}", HEADERS)
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("users", "POST", "auth/token")


async def test_profile_goes_to_users_with_the_token_subject(upstream: Any, gateway: Gateway) -> None:
    await gateway.get_profile(Principal("u-1"), HEADERS)
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path, request.body) == ("users", "GET", "users/u-1", b"")


async def test_notifications_go_to_notifications_with_the_token_subject(upstream: Any, gateway: Gateway) -> None:
    await gateway.list_notifications(Principal("u-1"), HEADERS)
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("notifications", "GET", "users/u-1/notifications")


async def test_products_go_to_inventory(upstream: Any, gateway: Gateway) -> None:
    gateway = gateway
    await gateway.list_products(HEADERS)
    await gateway.get_product("SKU-42.b_1", HEADERS)
    assert [(app_id, request.method, request.path) for app_id, request in upstream.calls] == [
        ("inventory", "GET", "products"),
        ("inventory", "GET", "products/SKU-42.b_1"),
    ]


async def test_wallet_goes_to_payments_with_the_token_subject(upstream: Any, gateway: Gateway) -> None:
    await gateway.get_wallet(Principal("u-1"), HEADERS)
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("payments", "GET", "wallets/u-1")


async def test_placing_an_order_goes_to_orders_for_the_token_subject(upstream: Any, gateway: Gateway) -> None:
    headers = {**HEADERS, "idempotency-key": "key-1"}
    await gateway.place_order(Principal("u-1"), b'{"lines": []}', headers)
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path, request.body) == (
        "orders",
        "POST",
        "users/u-1/orders",
        b'{"lines": []}',
    )
    assert request.headers == headers


async def test_orders_are_read_from_orders_for_the_token_subject(upstream: Any, gateway: Gateway) -> None:
    gateway = gateway
    await gateway.list_orders(Principal("u-1"), HEADERS)
    await gateway.get_order(Principal("u-1"), "6F1C2A4E-2B0B-4BB8-9A57-6F0A1D2F9C11", HEADERS)
    assert [(app_id, request.method, request.path) for app_id, request in upstream.calls] == [
        ("orders", "GET", "users/u-1/orders"),
        ("orders", "GET", "users/u-1/orders/6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11"),
    ]


@pytest.mark.parametrize("sku", ["", ".", "..", "a/b", "../admin", "a b", "x" * 65, "sku?x=1", "sku\n", "caf\u00e9"])
async def test_a_sku_that_cannot_exist_is_not_looked_up(upstream: Any, gateway: Gateway, sku: str) -> None:
    with pytest.raises(UnknownResourceError):
        await gateway.get_product(sku, HEADERS)
    assert upstream.calls == []


@pytest.mark.parametrize("order_id", ["", "42", "not-a-uuid", "../admin", "{6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11}"])
async def test_an_order_id_that_is_no_uuid_is_not_looked_up(upstream: Any, gateway: Gateway, order_id: str) -> None:
    with pytest.raises(UnknownResourceError):
        await gateway.get_order(Principal("u-1"), order_id, HEADERS)
    assert upstream.calls == []


@pytest.mark.parametrize("report", list(AnalyticsReport))
async def test_reports_go_to_analytics_with_the_allowed_query(
    upstream: Any, gateway: Gateway, report: AnalyticsReport
) -> None:
    query = [("limit", "5"), ("page", "2"), ("type", "orders"), ("from", "2026-01-01"), ("to", "2026-01-31")]
    await gateway.get_report(report, query, HEADERS)
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path, request.body) == ("analytics", "GET", f"reports/{report}", b"")
    assert request.query == "limit=5&type=orders&from=2026-01-01&to=2026-01-31"
    assert request.headers == HEADERS


async def test_a_report_without_a_query_sends_none(upstream: Any, gateway: Gateway) -> None:
    await gateway.get_report(AnalyticsReport.SUMMARY, [], HEADERS)
    assert upstream.calls[0][1].query == ""


async def test_other_routes_forward_no_query(upstream: Any, gateway: Gateway) -> None:
    await gateway.list_products(HEADERS)
    assert upstream.calls[0][1].query == ""


async def test_analytics_app_id_comes_from_configuration(upstream: Any, gateway: Gateway) -> None:
    gateway = replace(gateway, analytics_app_id="analytics-blue")
    await gateway.get_report(AnalyticsReport.FUNNEL, [], HEADERS)
    assert upstream.calls[0][0] == "analytics-blue"


async def test_app_ids_come_from_configuration(upstream: Any) -> None:
    gateway = Gateway(
        upstream,
        users_app_id="users-blue",
        notifications_app_id="notices-blue",
        inventory_app_id="stock-blue",
        payments_app_id="wallets-blue",
        orders_app_id="orders-blue",
    )
    caller = Principal("u-1")
    await gateway.get_profile(caller, HEADERS)
    await gateway.list_notifications(caller, HEADERS)
    await gateway.list_products(HEADERS)
    await gateway.get_wallet(caller, HEADERS)
    await gateway.list_orders(caller, HEADERS)
    assert [app_id for app_id, _ in upstream.calls] == [
        "users-blue",
        "notices-blue",
        "stock-blue",
        "wallets-blue",
        "orders-blue",
    ]


async def test_app_answer_is_mapped_for_the_client(upstream: Any, gateway: Gateway) -> None:
    upstream.answer = UpstreamResponse(404, {"content-type": "text/plain", "connection": "close"}, b"nope")
    answer = await gateway.get_profile(Principal("u-1"), HEADERS)
    assert answer.status == 404
    assert b'"not_found"' in answer.body
