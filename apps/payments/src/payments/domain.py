"""The money rules: one wallet per user, charges decided once per order, refunds at most once.

Plain Python: no FastAPI, no Dapr. The wallet document is the unit of atomicity: the balance, the totals and the
decision for every order charged to it (captured, declined, refunded, voided) change in ONE conditional write,
so `balance + captured == credits granted` and `balance >= 0` hold after every write, and an order's money moves
at most once whatever is retried or raced. `charge:{order_id}` is only an index (which wallet an order was
charged to, for the refund) and the tombstone of a refund that came before any charge.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sidecart_kit.documents import MalformedDocumentError, fields_of, whole_number

CURRENCY_PATTERN = r"^[A-Z]{3}$"


def wallet_key(user_id: UUID) -> str:
    return f"wallet:{user_id}"


def charge_key(order_id: UUID) -> str:
    return f"charge:{order_id}"


# --- errors the API answers with -------------------------------------------------------------------------------


class PaymentsError(Exception):
    """A refusal with a stable meaning (mapped to an HTTP answer by the API)."""


class WalletNotFoundError(PaymentsError):
    pass


class InsufficientFundsError(PaymentsError):
    def __init__(self, balance_cents: int, amount_cents: int) -> None:
        super().__init__(f"balance {balance_cents} < amount {amount_cents}")
        self.balance_cents = balance_cents
        self.amount_cents = amount_cents


class ChargeVoidedError(PaymentsError):
    """The order was refunded or voided: it is never charged (again)."""


class ChargeMismatchError(PaymentsError):
    """The same order id was charged before to another user or for another amount."""


class CurrencyMismatchError(PaymentsError):
    def __init__(self, expected: str, given: str) -> None:
        super().__init__(f"wallets hold {expected}, not {given}")
        self.expected = expected
        self.given = given


# --- wallets ---------------------------------------------------------------------------------------------------


def _uuid_or_none(value: object) -> UUID | None:
    return None if value is None else UUID(str(value))


class ChargeState(StrEnum):
    CAPTURED = "captured"
    DECLINED = "declined"  # not enough balance when it was decided; final
    REFUNDED = "refunded"  # captured, then given back
    VOIDED = "voided"  # a refund came before any charge: the order is never charged


class EntryKind(StrEnum):
    CREDIT = "credit"
    CHARGE = "charge"
    REFUND = "refund"


@dataclass(frozen=True)
class ChargeDecision:
    """What happened to an order's charge on this wallet, and the balance right after (the charge's answer)."""

    amount_cents: int
    state: ChargeState
    balance_cents: int
    decided_at: datetime

    def to_document(self) -> dict[str, Any]:
        return {
            "amount_cents": self.amount_cents,
            "state": self.state.value,
            "balance_cents": self.balance_cents,
            "decided_at": self.decided_at.isoformat(),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "ChargeDecision":
        return cls(
            amount_cents=whole_number(document, "amount_cents"),
            state=ChargeState(document["state"]),
            balance_cents=whole_number(document, "balance_cents"),
            decided_at=datetime.fromisoformat(str(document["decided_at"])),
        )


@dataclass(frozen=True)
class Entry:
    kind: EntryKind
    order_id: UUID | None
    amount_cents: int
    at: datetime

    def to_document(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "order_id": None if self.order_id is None else str(self.order_id),
            "amount_cents": self.amount_cents,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "Entry":
        return cls(
            kind=EntryKind(document["kind"]),
            order_id=_uuid_or_none(document.get("order_id")),
            amount_cents=whole_number(document, "amount_cents"),
            at=datetime.fromisoformat(str(document["at"])),
        )


@dataclass(frozen=True)
class Wallet:
    """A user's money. Exists before the user's starting credit when a charge or refund came first: such a
    wallet holds the decisions for those orders but is not shown to anyone until the credit arrives."""

    user_id: UUID
    currency: str
    balance_cents: int = 0
    credits_granted_cents: int = 0
    captured_cents: int = 0
    starting_credit_granted: bool = False
    charges: Mapping[str, ChargeDecision] = field(default_factory=dict)
    entries: tuple[Entry, ...] = ()  # newest first, bounded

    @classmethod
    def open(cls, user_id: UUID, currency: str) -> "Wallet":
        return cls(user_id, currency)

    def grant_starting_credit(self, amount_cents: int, now: datetime, max_entries: int) -> "Wallet | None":
        """The wallet with the starting credit added, once per user; None when it was granted before."""
        if self.starting_credit_granted:
            return None
        return replace(
            self,
            balance_cents=self.balance_cents + amount_cents,
            credits_granted_cents=self.credits_granted_cents + amount_cents,
            starting_credit_granted=True,
            entries=(Entry(EntryKind.CREDIT, None, amount_cents, now), *self.entries)[:max_entries],
        )

    def charge(
        self, order_id: UUID, amount_cents: int, now: datetime, max_entries: int
    ) -> tuple["Wallet | None", ChargeDecision]:
        """Decides the order's charge once: captured if the balance covers it, else declined for good.

        Returns the changed wallet (None when the order was decided before) and the decision.
        """
        decided = self.charges.get(str(order_id))
        if decided is not None:
            return None, decided
        if self.balance_cents < amount_cents:
            decision = ChargeDecision(amount_cents, ChargeState.DECLINED, self.balance_cents, now)
            return replace(self, charges={**self.charges, str(order_id): decision}), decision
        balance = self.balance_cents - amount_cents
        decision = ChargeDecision(amount_cents, ChargeState.CAPTURED, balance, now)
        return replace(
            self,
            balance_cents=balance,
            captured_cents=self.captured_cents + amount_cents,
            charges={**self.charges, str(order_id): decision},
            entries=(Entry(EntryKind.CHARGE, order_id, amount_cents, now), *self.entries)[:max_entries],
        ), decision

    def refund(
        self, order_id: UUID, amount_cents: int, now: datetime, max_entries: int
    ) -> tuple["Wallet | None", ChargeDecision]:
        """Gives a captured charge back once; voids an order not charged yet so it never is.

        A declined order stays declined (nothing was taken). Returns the changed wallet (None when nothing
        changes) and the order's decision afterwards.
        """
        decided = self.charges.get(str(order_id))
        if decided is None:
            decision = ChargeDecision(amount_cents, ChargeState.VOIDED, self.balance_cents, now)
            return replace(self, charges={**self.charges, str(order_id): decision}), decision
        if decided.state is not ChargeState.CAPTURED:
            return None, decided
        balance = self.balance_cents + decided.amount_cents
        decision = ChargeDecision(decided.amount_cents, ChargeState.REFUNDED, balance, now)
        return replace(
            self,
            balance_cents=balance,
            captured_cents=self.captured_cents - decided.amount_cents,
            charges={**self.charges, str(order_id): decision},
            entries=(Entry(EntryKind.REFUND, order_id, decided.amount_cents, now), *self.entries)[:max_entries],
        ), decision

    def to_document(self) -> dict[str, Any]:
        return {
            "user_id": str(self.user_id),
            "currency": self.currency,
            "balance_cents": self.balance_cents,
            "credits_granted_cents": self.credits_granted_cents,
            "captured_cents": self.captured_cents,
            "starting_credit_granted": self.starting_credit_granted,
            "charges": {order_id: decision.to_document() for order_id, decision in self.charges.items()},
            "entries": [entry.to_document() for entry in self.entries],
        }

    @classmethod
    def from_document(cls, document: object) -> "Wallet":
        with fields_of(document, "wallet") as fields:
            charges = fields.get("charges", {})
            entries = fields.get("entries", [])
            if not isinstance(charges, Mapping) or not isinstance(entries, list):
                raise MalformedDocumentError("charges or entries are malformed")
            return cls(
                user_id=UUID(str(fields["user_id"])),
                currency=str(fields["currency"]),
                balance_cents=whole_number(fields, "balance_cents"),
                credits_granted_cents=whole_number(fields, "credits_granted_cents"),
                captured_cents=whole_number(fields, "captured_cents"),
                starting_credit_granted=bool(fields.get("starting_credit_granted", False)),
                charges={str(order_id): ChargeDecision.from_document(charges[order_id]) for order_id in charges},
                entries=tuple(Entry.from_document(entry) for entry in entries),
            )


# --- the charge index ------------------------------------------------------------------------------------------


class ChargeStatus(StrEnum):
    PENDING = "pending"  # a charge was asked for; the wallet holds the decision (if one was made yet)
    CAPTURED = "captured"
    DECLINED = "declined"
    REFUNDED = "refunded"
    VOIDED = "voided"


_RANK = {
    ChargeStatus.PENDING: 0,
    ChargeStatus.CAPTURED: 1,
    ChargeStatus.DECLINED: 1,
    ChargeStatus.REFUNDED: 2,
    ChargeStatus.VOIDED: 2,
}


@dataclass(frozen=True)
class ChargeRecord:
    """`charge:{order_id}`: which wallet the order is charged to (fixed once written), and a copy of its status.

    A record without a user is the tombstone of a refund that came first: the order is never charged.
    """

    order_id: UUID
    user_id: UUID | None
    amount_cents: int
    currency: str
    status: ChargeStatus
    updated_at: datetime

    @classmethod
    def pending(cls, order_id: UUID, user_id: UUID, amount_cents: int, currency: str, now: datetime) -> "ChargeRecord":
        return cls(order_id, user_id, amount_cents, currency, ChargeStatus.PENDING, now)

    @classmethod
    def tombstone(cls, order_id: UUID, now: datetime) -> "ChargeRecord":
        return cls(order_id, None, 0, "", ChargeStatus.VOIDED, now)

    def with_status(self, status: ChargeStatus, now: datetime) -> "ChargeRecord | None":
        """The record showing `status`; None unless that is a step forward (copies only move forward)."""
        if _RANK[status] <= _RANK[self.status]:
            return None
        return replace(self, status=status, updated_at=now)

    def to_document(self) -> dict[str, Any]:
        return {
            "order_id": str(self.order_id),
            "user_id": None if self.user_id is None else str(self.user_id),
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "status": self.status.value,
            "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_document(cls, document: object) -> "ChargeRecord":
        with fields_of(document, "charge") as fields:
            return cls(
                order_id=UUID(str(fields["order_id"])),
                user_id=_uuid_or_none(fields.get("user_id")),
                amount_cents=whole_number(fields, "amount_cents"),
                currency=str(fields["currency"]),
                status=ChargeStatus(fields["status"]),
                updated_at=datetime.fromisoformat(str(fields["updated_at"])),
            )


def status_of(decision: ChargeDecision) -> ChargeStatus:
    return ChargeStatus(decision.state.value)
