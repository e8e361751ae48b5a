"""Credits, charges and refunds under concurrency and crashes, against a fake store that enforces ETags."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

import pytest

from payments.domain import (
    ChargeMismatchError,
    ChargeRecord,
    ChargeState,
    ChargeStatus,
    ChargeVoidedError,
    CurrencyMismatchError,
    InsufficientFundsError,
    Wallet,
    WalletNotFoundError,
    charge_key,
    wallet_key,
)
from payments.handlers import (
    ChargePayment,
    CreditOutcome,
    Payments,
    RefundOutcome,
)
from payments.settings import Settings
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import StoreUnavailableError
from sidecart_kit.testing import FakeStateStore, backoffs_before_contention, crash_at_every_write

from .conftest import NOW, ORDER, USER


def _payments(store: Any, sleep: Any, **options: Any) -> Payments:
    options.setdefault("retry", Settings().update_retry())
    return Payments(store, clock=lambda: NOW, sleep=sleep, **options)


def _charge(order_id: UUID = ORDER, amount_cents: int = 2500, user_id: UUID = USER) -> ChargePayment:
    return ChargePayment(order_id=order_id, user_id=user_id, amount_cents=amount_cents, currency="EUR")


def _wallet(store: Any, user_id: UUID = USER) -> Wallet:
    return Wallet.from_document(store.document(wallet_key(user_id)))


def _assert_balanced(store: Any) -> None:
    for key, (document, _) in store.documents.items():
        if key.startswith("wallet:"):
            wallet = Wallet.from_document(document)
            assert wallet.balance_cents >= 0, wallet
            assert wallet.balance_cents + wallet.captured_cents == wallet.credits_granted_cents, wallet
            captured = sum(d.amount_cents for d in wallet.charges.values() if d.state is ChargeState.CAPTURED)
            assert captured == wallet.captured_cents, wallet


# --- the starting credit ---------------------------------------------------------------------------------------


async def test_a_new_user_gets_the_starting_credit_once(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep, starting_credit_cents=10_000)
    assert await payments.grant_starting_credit(USER) is CreditOutcome.CREDITED
    assert await payments.grant_starting_credit(USER) is CreditOutcome.ALREADY_CREDITED
    wallet = await payments.wallet(USER)
    assert (wallet.balance_cents, wallet.credits_granted_cents, wallet.currency) == (10_000, 10_000, "EUR")


async def test_concurrent_deliveries_credit_once(store: Any, sleep: Any) -> None:
    store.interleave = True
    replicas = [_payments(store, sleep) for _ in range(2)]
    outcomes = await asyncio.gather(*(replicas[number % 2].grant_starting_credit(USER) for number in range(8)))
    assert outcomes.count(CreditOutcome.CREDITED) == 1
    assert _wallet(store).balance_cents == 10_000


async def test_no_wallet_until_the_credit(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    with pytest.raises(WalletNotFoundError):
        await payments.wallet(USER)
    with pytest.raises(InsufficientFundsError):
        await payments.charge(_charge())  # a wallet exists now, holding that decision, but is not shown
    with pytest.raises(WalletNotFoundError):
        await payments.wallet(USER)
    await payments.grant_starting_credit(USER)
    assert (await payments.wallet(USER)).balance_cents == 10_000


# --- charges ---------------------------------------------------------------------------------------------------


async def test_a_charge_is_captured_once(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    await payments.grant_starting_credit(USER)
    decision = await payments.charge(_charge())
    assert (decision.state, decision.amount_cents, decision.balance_cents) == (ChargeState.CAPTURED, 2500, 7500)
    writes = store.writes
    assert await payments.charge(_charge()) == decision
    assert store.writes == writes
    assert _wallet(store).balance_cents == 7500
    assert ChargeRecord.from_document(store.document(charge_key(ORDER))).status is ChargeStatus.CAPTURED


@pytest.mark.parametrize("replicas", [1, 3])
async def test_ten_identical_charges_at_once_charge_once(store: Any, sleep: Any, replicas: int) -> None:
    store.interleave = True
    replicas_ = [_payments(store, sleep) for _ in range(replicas)]  # each replica has its own key locks
    await replicas_[0].grant_starting_credit(USER)
    decisions = await asyncio.gather(*(replicas_[number % replicas].charge(_charge()) for number in range(10)))
    assert len(set(decisions)) == 1
    assert (_wallet(store).balance_cents, _wallet(store).captured_cents) == (7500, 2500)
    if replicas > 1:
        assert store.conflicts > 0  # the replicas really raced on the ETags


async def test_concurrent_orders_never_overdraw(store: Any, sleep: Any) -> None:
    store.interleave = True
    payments, replica = _payments(store, sleep), _payments(store, sleep)
    await payments.grant_starting_credit(USER)
    results = await asyncio.gather(
        *((payments, replica)[number % 2].charge(_charge(uuid.uuid4(), 3000)) for number in range(10)),
        return_exceptions=True,
    )
    assert sum(not isinstance(result, Exception) for result in results) == 3
    assert all(isinstance(result, InsufficientFundsError) for result in results if isinstance(result, Exception))
    assert _wallet(store).balance_cents == 1000
    _assert_balanced(store)


async def test_a_decline_is_recorded_and_repeated_even_once_money_is_back(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    await payments.grant_starting_credit(USER)
    big = uuid.uuid4()
    await payments.charge(_charge(big, 9000))
    with pytest.raises(InsufficientFundsError) as first:
        await payments.charge(_charge(ORDER, 2500))
    assert (first.value.balance_cents, first.value.amount_cents) == (1000, 2500)
    assert await payments.refund(big) is RefundOutcome.REFUNDED
    with pytest.raises(InsufficientFundsError) as again:
        await payments.charge(_charge(ORDER, 2500))
    assert again.value.balance_cents == 1000
    assert _wallet(store).balance_cents == 10_000


async def test_a_charge_for_a_user_without_a_wallet_is_declined_for_good(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    with pytest.raises(InsufficientFundsError):
        await payments.charge(_charge())
    await payments.grant_starting_credit(USER)
    with pytest.raises(InsufficientFundsError):
        await payments.charge(_charge())
    assert _wallet(store).balance_cents == 10_000


async def test_the_same_order_for_another_user_or_amount_is_a_mismatch(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    await payments.grant_starting_credit(USER)
    await payments.charge(_charge())
    with pytest.raises(ChargeMismatchError):
        await payments.charge(_charge(amount_cents=1))
    with pytest.raises(ChargeMismatchError):
        await payments.charge(_charge(user_id=uuid.uuid4()))
    assert _wallet(store).captured_cents == 2500


async def test_another_currency_is_refused_before_anything_is_recorded(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    with pytest.raises(CurrencyMismatchError):
        await payments.charge(ChargePayment(order_id=ORDER, user_id=USER, amount_cents=1, currency="USD"))
    assert store.documents == {}


# --- refunds ---------------------------------------------------------------------------------------------------


async def test_a_refund_gives_the_money_back_once_and_refuses_a_new_charge(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    await payments.grant_starting_credit(USER)
    await payments.charge(_charge())
    for _ in range(3):
        assert await payments.refund(ORDER) is RefundOutcome.REFUNDED
    assert (_wallet(store).balance_cents, _wallet(store).captured_cents) == (10_000, 0)
    with pytest.raises(ChargeVoidedError):
        await payments.charge(_charge())
    _assert_balanced(store)


async def test_a_refund_before_any_charge_voids_the_order(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    await payments.grant_starting_credit(USER)
    assert await payments.refund(ORDER) is RefundOutcome.VOIDED
    assert await payments.refund(ORDER) is RefundOutcome.VOIDED
    with pytest.raises(ChargeVoidedError):
        await payments.charge(_charge())
    assert _wallet(store).balance_cents == 10_000


async def test_a_refund_of_a_declined_charge_is_voided(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    with pytest.raises(InsufficientFundsError):
        await payments.charge(_charge())
    assert await payments.refund(ORDER) is RefundOutcome.VOIDED


async def test_charges_and_refunds_racing_keep_no_money_of_a_refunded_order(store: Any, sleep: Any) -> None:
    store.interleave = True
    payments, replica = _payments(store, sleep), _payments(store, sleep)
    await payments.grant_starting_credit(USER)
    orders = [uuid.uuid4() for _ in range(15)]
    calls = [call for order in orders for call in (payments.charge(_charge(order, 100)), replica.refund(order))]
    await asyncio.gather(*calls, return_exceptions=True)
    wallet = _wallet(store)
    assert (wallet.balance_cents, wallet.captured_cents) == (10_000, 0)
    assert {wallet.charges[str(order)].state for order in orders} <= {ChargeState.REFUNDED, ChargeState.VOIDED}
    _assert_balanced(store)


# --- crashes between any two writes ----------------------------------------------------------------------------


async def _crash_everywhere(
    sleep: Any,
    action: Callable[[Payments], Awaitable[object]],
    recover: Callable[[Payments], Awaitable[object]],
    check: Callable[[Any], None],
    setup: Callable[[Payments], Awaitable[object]] | None = None,
) -> int:
    """Runs `action` on a credited wallet crashing before its 1st, 2nd, ... write, then `recover`, and checks the
    outcome each time."""

    async def prepare(store: FakeStateStore) -> Payments:
        payments = _payments(store, sleep)
        await payments.grant_starting_credit(USER)
        if setup is not None:
            await setup(payments)
        return payments

    return await crash_at_every_write(prepare, action, recover, check, invariant=_assert_balanced)


async def test_a_crashed_charge_is_completed_by_its_retry(sleep: Any) -> None:
    def check(store: Any) -> None:
        assert (_wallet(store).balance_cents, _wallet(store).captured_cents) == (7500, 2500)

    points = await _crash_everywhere(sleep, lambda p: p.charge(_charge()), lambda p: p.charge(_charge()), check)
    assert points == 3  # index, wallet, status copy


async def test_a_crashed_charge_is_undone_by_the_refund(sleep: Any) -> None:
    async def refund_then_late_charge(payments: Payments) -> None:
        await payments.refund(ORDER)
        with pytest.raises(ChargeVoidedError):
            await payments.charge(_charge())

    def check(store: Any) -> None:
        assert (_wallet(store).balance_cents, _wallet(store).captured_cents) == (10_000, 0)

    await _crash_everywhere(sleep, lambda p: p.charge(_charge()), refund_then_late_charge, check)


async def test_a_crashed_refund_is_completed_by_its_retry(sleep: Any) -> None:
    async def charged(payments: Payments) -> None:
        await payments.charge(_charge())

    def check(store: Any) -> None:
        assert (_wallet(store).balance_cents, _wallet(store).captured_cents) == (10_000, 0)
        assert [entry.kind.value for entry in _wallet(store).entries] == ["refund", "charge", "credit"]

    points = await _crash_everywhere(sleep, lambda p: p.refund(ORDER), lambda p: p.refund(ORDER), check, setup=charged)
    assert points == 2  # wallet, status copy


# --- outages and contention ------------------------------------------------------------------------------------


async def test_a_store_outage_is_reported(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    store.available = False
    for call in (payments.grant_starting_credit(USER), payments.charge(_charge()), payments.refund(ORDER)):
        with pytest.raises(StoreUnavailableError):
            await call


async def test_a_failed_status_copy_does_not_fail_the_charge(store: Any, sleep: Any) -> None:
    payments = _payments(store, sleep)
    await payments.grant_starting_credit(USER)
    original_save = store.save
    index_writes = 0

    async def index_fails_after_creation(key: str, document: Mapping[str, Any], etag: str | None) -> None:
        nonlocal index_writes
        if key == charge_key(ORDER):
            index_writes += 1
            if index_writes > 1:
                raise StoreUnavailableError("down")
        await original_save(key, document, etag)

    store.save = index_fails_after_creation
    assert (await payments.charge(_charge())).state is ChargeState.CAPTURED
    assert ChargeRecord.from_document(store.document(charge_key(ORDER))).status is ChargeStatus.PENDING
    assert await payments.refund(ORDER) is RefundOutcome.REFUNDED  # the wallet, not the copy, decides


async def test_endless_conflicts_give_up_after_the_attempts(store: Any, sleep: Any) -> None:
    store.conflicting = True
    payments = _payments(store, sleep, retry=RetryPolicy(attempts=4))
    assert await backoffs_before_contention(payments.grant_starting_credit(USER), sleep) == 4
