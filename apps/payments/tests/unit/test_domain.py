"""The money rules: the starting credit once, each order decided once, refunds once, never a negative balance."""

import uuid

import pytest

from payments.domain import (
    ChargeRecord,
    ChargeState,
    ChargeStatus,
    EntryKind,
    Wallet,
    charge_key,
    wallet_key,
)
from sidecart_kit.documents import MalformedDocumentError

from .conftest import NOW, ORDER, USER


def _balanced(wallet: Wallet) -> bool:
    return wallet.balance_cents >= 0 and wallet.balance_cents + wallet.captured_cents == wallet.credits_granted_cents


def _credited(amount: int = 10_000) -> Wallet:
    wallet = Wallet.open(USER, "EUR").grant_starting_credit(amount, NOW, max_entries=50)
    assert wallet is not None
    return wallet


def test_the_starting_credit_is_granted_once() -> None:
    wallet = _credited()
    assert (wallet.balance_cents, wallet.credits_granted_cents, wallet.starting_credit_granted) == (
        10_000,
        10_000,
        True,
    )
    assert [entry.kind for entry in wallet.entries] == [EntryKind.CREDIT]
    assert wallet.grant_starting_credit(10_000, NOW, max_entries=50) is None
    assert _balanced(wallet)


def test_a_charge_is_captured_once() -> None:
    wallet, decision = _credited().charge(ORDER, 2500, NOW, max_entries=50)
    assert wallet is not None
    assert (decision.state, decision.balance_cents, decision.amount_cents) == (ChargeState.CAPTURED, 7500, 2500)
    assert (wallet.balance_cents, wallet.captured_cents) == (7500, 2500)
    assert (wallet.entries[0].kind, wallet.entries[0].order_id, wallet.entries[0].amount_cents) == (
        EntryKind.CHARGE,
        ORDER,
        2500,
    )
    again, same = wallet.charge(ORDER, 2500, NOW, max_entries=50)
    assert (again, same) == (None, decision)
    assert _balanced(wallet)


def test_a_charge_beyond_the_balance_is_declined_for_good() -> None:
    wallet, decision = _credited(1000).charge(ORDER, 1001, NOW, max_entries=50)
    assert wallet is not None
    assert (decision.state, decision.balance_cents) == (ChargeState.DECLINED, 1000)
    assert (wallet.balance_cents, wallet.captured_cents, len(wallet.entries)) == (1000, 0, 1)
    richer = wallet.grant_starting_credit(5000, NOW, max_entries=50)  # no-op: granted already
    assert richer is None
    assert wallet.charge(ORDER, 1001, NOW, max_entries=50) == (None, decision)


def test_the_exact_balance_can_be_charged() -> None:
    wallet, decision = _credited(1000).charge(ORDER, 1000, NOW, max_entries=50)
    assert wallet is not None
    assert (decision.state, wallet.balance_cents) == (ChargeState.CAPTURED, 0)


def test_a_refund_gives_the_capture_back_once() -> None:
    charged, _ = _credited().charge(ORDER, 2500, NOW, max_entries=50)
    assert charged is not None
    refunded, decision = charged.refund(ORDER, 2500, NOW, max_entries=50)
    assert refunded is not None
    assert (decision.state, refunded.balance_cents, refunded.captured_cents) == (ChargeState.REFUNDED, 10_000, 0)
    assert refunded.entries[0].kind is EntryKind.REFUND
    assert refunded.refund(ORDER, 2500, NOW, max_entries=50) == (None, decision)
    assert refunded.charge(ORDER, 2500, NOW, max_entries=50) == (None, decision)
    assert _balanced(refunded)


def test_a_refund_before_the_charge_voids_the_order() -> None:
    voided, decision = _credited().refund(ORDER, 2500, NOW, max_entries=50)
    assert voided is not None
    assert (decision.state, voided.balance_cents, len(voided.entries)) == (ChargeState.VOIDED, 10_000, 1)
    late, answer = voided.charge(ORDER, 2500, NOW, max_entries=50)
    assert (late, answer.state) == (None, ChargeState.VOIDED)


def test_a_refund_of_a_declined_charge_changes_nothing() -> None:
    declined, decision = _credited(100).charge(ORDER, 2500, NOW, max_entries=50)
    assert declined is not None
    assert declined.refund(ORDER, 2500, NOW, max_entries=50) == (None, decision)


def test_entries_are_newest_first_and_bounded() -> None:
    wallet = _credited()
    for number in range(5):
        charged, _ = wallet.charge(uuid.uuid4(), number + 1, NOW, max_entries=3)
        assert charged is not None
        wallet = charged
    assert [entry.amount_cents for entry in wallet.entries] == [5, 4, 3]
    assert _balanced(wallet)


def test_wallet_document_round_trip() -> None:
    charged, _ = _credited().charge(ORDER, 2500, NOW, max_entries=50)
    assert charged is not None
    voided, _ = charged.refund(uuid.uuid4(), 1, NOW, max_entries=50)
    assert voided is not None
    assert Wallet.from_document(voided.to_document()) == voided


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"user_id": str(USER)},
        {**Wallet.open(USER, "EUR").to_document(), "balance_cents": -1},
        {**Wallet.open(USER, "EUR").to_document(), "charges": []},
        {**Wallet.open(USER, "EUR").to_document(), "charges": {"x": {"state": "odd"}}},
        {**Wallet.open(USER, "EUR").to_document(), "entries": [{"kind": "gift"}]},
    ],
)
def test_malformed_wallet_is_refused(document: object) -> None:
    with pytest.raises(MalformedDocumentError):
        Wallet.from_document(document)


def test_charge_record_status_only_moves_forward() -> None:
    record = ChargeRecord.pending(ORDER, USER, 2500, "EUR", NOW)
    captured = record.with_status(ChargeStatus.CAPTURED, NOW)
    assert captured is not None
    assert captured.with_status(ChargeStatus.PENDING, NOW) is None
    assert captured.with_status(ChargeStatus.CAPTURED, NOW) is None
    refunded = captured.with_status(ChargeStatus.REFUNDED, NOW)
    assert refunded is not None
    assert refunded.with_status(ChargeStatus.CAPTURED, NOW) is None
    assert ChargeRecord.from_document(refunded.to_document()) == refunded
    tombstone = ChargeRecord.tombstone(ORDER, NOW)
    assert (tombstone.user_id, tombstone.status) == (None, ChargeStatus.VOIDED)
    assert ChargeRecord.from_document(tombstone.to_document()) == tombstone


def test_keys() -> None:
    assert wallet_key(USER) == f"wallet:{USER}"
    assert charge_key(ORDER) == f"charge:{ORDER}"
