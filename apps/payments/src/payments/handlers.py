"""Use cases: the starting credit once per user, charges decided once per order, refunds at most once.

Every change is a read-modify-write of ONE document under its ETag, retried on conflict. The wallet decides; the
charge index only points at the wallet (written before the wallet, so a refund can always find it) and keeps a
copy of the status (written after, best effort: the wallet is the truth and every call re-reads it).
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

from payments.domain import (
    ChargeDecision,
    ChargeMismatchError,
    ChargeRecord,
    ChargeState,
    ChargeVoidedError,
    CurrencyMismatchError,
    InsufficientFundsError,
    Wallet,
    WalletNotFoundError,
    charge_key,
    status_of,
    wallet_key,
)
from sidecart_kit.logs import get_logger
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import (
    ConcurrencyConflictError,
    ContentionError,
    DocumentUpdates,
    StateStore,
    StoreUnavailableError,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class ChargePayment:
    """Command: charge an order's amount to a user's wallet."""

    order_id: UUID
    user_id: UUID
    amount_cents: int
    currency: str


class CreditOutcome(StrEnum):
    CREDITED = "credited"
    ALREADY_CREDITED = "already_credited"


class RefundOutcome(StrEnum):
    REFUNDED = "refunded"  # the captured money went back to the wallet (now or before)
    VOIDED = "voided"  # nothing was captured; the order will never be charged


# Rounds of "read the charge index, act on it": one normally, a second after losing the race to create it.
_ROUNDS = 5


class Payments:
    """Wallets, charges and refunds under optimistic concurrency on single documents."""

    def __init__(
        self,
        store: StateStore,
        *,
        currency: str = "EUR",
        starting_credit_cents: int = 10_000,
        max_entries: int = 50,
        retry: RetryPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._currency = currency
        self._starting_credit = starting_credit_cents
        self._max_entries = max_entries
        self._updates = DocumentUpdates(store, retry=retry, sleep=sleep)
        self._clock = clock

    async def grant_starting_credit(self, user_id: UUID) -> CreditOutcome:
        """Credits a new user's wallet once, however many events announce the user."""

        def grant(wallet: Wallet | None) -> tuple[Wallet | None, CreditOutcome]:
            current = wallet or Wallet.open(user_id, self._currency)
            updated = current.grant_starting_credit(self._starting_credit, self._clock(), self._max_entries)
            return updated, CreditOutcome.ALREADY_CREDITED if updated is None else CreditOutcome.CREDITED

        return await self._updates.update_model(wallet_key(user_id), Wallet.from_document, grant)

    async def wallet(self, user_id: UUID) -> Wallet:
        """The user's wallet; WalletNotFoundError until the starting credit was granted."""
        found = await self._store.get(wallet_key(user_id))
        wallet = None if found is None else Wallet.from_document(found.document)
        if wallet is None or not wallet.starting_credit_granted:
            raise WalletNotFoundError(f"no wallet for user {user_id}")
        return wallet

    async def charge(self, command: ChargePayment) -> ChargeDecision:
        """Captures the amount once per order. The same answer however often it is asked.

        Raises InsufficientFundsError (also for a user without a wallet yet: decided and kept, like any
        decline), ChargeVoidedError, ChargeMismatchError or CurrencyMismatchError.
        """
        if command.currency != self._currency:
            raise CurrencyMismatchError(self._currency, command.currency)
        record = await self._charge_record(command)
        if record.user_id is None:
            raise ChargeVoidedError(f"order {command.order_id} was refunded before it was charged")
        if record.user_id != command.user_id or record.amount_cents != command.amount_cents:
            raise ChargeMismatchError(f"order {command.order_id} was charged before to another user or amount")

        def decide(wallet: Wallet | None) -> tuple[Wallet | None, ChargeDecision]:
            current = wallet or Wallet.open(command.user_id, self._currency)
            return current.charge(command.order_id, command.amount_cents, self._clock(), self._max_entries)

        decision = await self._updates.update_model(wallet_key(command.user_id), Wallet.from_document, decide)
        await self._copy_status(command.order_id, decision)
        match decision.state:
            case ChargeState.CAPTURED:
                return decision
            case ChargeState.DECLINED:
                raise InsufficientFundsError(decision.balance_cents, decision.amount_cents)
            case ChargeState.REFUNDED | ChargeState.VOIDED:
                raise ChargeVoidedError(f"order {command.order_id} was refunded or voided")

    async def refund(self, order_id: UUID) -> RefundOutcome:
        """Gives a captured charge back once; otherwise voids the order so a late charge is refused."""
        for _ in range(_ROUNDS):
            found = await self._store.get(charge_key(order_id))
            if found is None:
                try:
                    tombstone = ChargeRecord.tombstone(order_id, self._clock())
                    await self._store.save(charge_key(order_id), tombstone.to_document(), None)
                except ConcurrencyConflictError:
                    continue  # a charge began just now: refund it through its wallet
                return RefundOutcome.VOIDED
            record = ChargeRecord.from_document(found.document)
            if record.user_id is None:
                return RefundOutcome.VOIDED
            decision = await self._refund_on_wallet(order_id, record.user_id, record.amount_cents)
            await self._copy_status(order_id, decision)
            return RefundOutcome.REFUNDED if decision.state is ChargeState.REFUNDED else RefundOutcome.VOIDED
        raise ContentionError(f"the charge of order {order_id} kept changing")

    async def _refund_on_wallet(self, order_id: UUID, user_id: UUID, amount_cents: int) -> ChargeDecision:
        def decide(wallet: Wallet | None) -> tuple[Wallet | None, ChargeDecision]:
            current = wallet or Wallet.open(user_id, self._currency)
            return current.refund(order_id, amount_cents, self._clock(), self._max_entries)

        return await self._updates.update_model(wallet_key(user_id), Wallet.from_document, decide)

    async def _charge_record(self, command: ChargePayment) -> ChargeRecord:
        """The order's charge index, written first (pending) if there is none, so a refund finds the wallet."""
        for _ in range(_ROUNDS):
            found = await self._store.get(charge_key(command.order_id))
            if found is not None:
                return ChargeRecord.from_document(found.document)
            record = ChargeRecord.pending(
                command.order_id, command.user_id, command.amount_cents, command.currency, self._clock()
            )
            try:
                await self._store.save(charge_key(command.order_id), record.to_document(), None)
            except ConcurrencyConflictError:
                continue
            return record
        raise ContentionError(f"the charge of order {command.order_id} kept changing")

    async def _copy_status(self, order_id: UUID, decision: ChargeDecision) -> None:
        """Copies the wallet's decision onto the index, for people reading the store; never needed for a decision."""
        status = status_of(decision)

        def advance(record: ChargeRecord | None) -> tuple[ChargeRecord | None, None]:
            return (None if record is None else record.with_status(status, self._clock())), None

        try:
            await self._updates.update_model(charge_key(order_id), ChargeRecord.from_document, advance)
        except StoreUnavailableError as exc:
            log.warning("charge_index_not_updated", order_id=str(order_id), status=status.value, error=str(exc))
