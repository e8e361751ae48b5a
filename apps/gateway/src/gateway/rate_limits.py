"""How often each caller may call: moving-window limits per client address, per signed-in user, and tighter ones on
login and sign-up, so a password cannot be guessed at speed and one caller cannot take the API from the others.

The counters live in this process (the `limits` library's memory storage): one gateway instance, one set of
counters. Requests over a limit are refused before anything is forwarded, so a flood costs the gateway a counter
update per request and the apps behind it nothing (load is shed, not queued). A refused login or sign-up is also
held back a moment before its 429 goes out (`HoldBack`), so a guesser in a tight loop waits on an idle coroutine
instead of taking the gateway's CPU from everyone else with thousands of refusals a second. The client address is
the peer of the TCP connection: the gateway trusts no X-Forwarded-For (an untrusted client could name any address
there).
"""

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from contracts.users import normalise_email


class RateLimitedError(Exception):
    """Over a limit until `reset_at` (epoch seconds: when the oldest counted call leaves the window)."""

    def __init__(self, scope: str, reset_at: float) -> None:
        super().__init__(f"rate limit per {scope} reached")
        self.scope = scope
        self.reset_at = reset_at

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds from now until the caller may try again (read when the answer goes out, after any hold)."""
        return max(1, math.ceil(self.reset_at - time.time()))


class HoldBack:
    """Holds a refusal for `seconds` before it is answered, at most `max_held` at once (beyond that, a refusal is
    answered at once: held ones cost a coroutine each, and that must stay bounded too)."""

    def __init__(
        self, seconds: float, max_held: int, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self.seconds = seconds
        self.max_held = max_held
        self.held = 0
        self._sleep = sleep

    async def hold(self) -> None:
        if self.seconds <= 0 or self.held >= self.max_held:
            return
        self.held += 1
        try:
            await self._sleep(self.seconds)
        finally:
            self.held -= 1


@dataclass(frozen=True)
class LimitSpecs:
    """Each limit in the `limits` notation: "20/second;600/minute" is both at once."""

    per_address: str
    per_subject: str
    login_per_account_and_address: str
    login_per_address: str
    sign_up_per_address: str


class RateLimits:
    def __init__(self, specs: LimitSpecs, hold_back: HoldBack | None = None) -> None:
        """`hold_back`: what holds a refused login or sign-up (none: each is refused at once)."""
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._hold_back = hold_back or HoldBack(0, 0)
        self._per_address = parse_many(specs.per_address)
        self._per_subject = parse_many(specs.per_subject)
        self._login_per_account = parse_many(specs.login_per_account_and_address)
        self._login_per_address = parse_many(specs.login_per_address)
        self._sign_up_per_address = parse_many(specs.sign_up_per_address)

    def count_request(self, address: str) -> None:
        """Every public request, by client address."""
        self._hit("address", self._per_address, "address", address)

    def count_caller(self, subject: str) -> None:
        """Every request of a signed-in user, by the token's subject, whatever address it comes from."""
        self._hit("user", self._per_subject, "subject", subject)

    async def count_login(self, address: str, email: str | None) -> None:
        """A login attempt: by address, and by the account tried from that address (so attempts on one account
        from one address are held back while its owner, elsewhere, can still log in). A refusal is held back
        before it is raised."""
        await self._hit_or_hold("address", self._login_per_address, "login", address)
        if email is not None:
            await self._hit_or_hold(
                "account", self._login_per_account, "login-account", address, normalise_email(email)
            )

    async def count_sign_up(self, address: str) -> None:
        await self._hit_or_hold("address", self._sign_up_per_address, "sign-up", address)

    async def _hit_or_hold(self, scope: str, items: Sequence[RateLimitItem], *key: str) -> None:
        """`_hit`, with a refusal held back before it is raised."""
        try:
            self._hit(scope, items, *key)
        except RateLimitedError:
            await self._hold_back.hold()
            raise

    def _hit(self, scope: str, items: Sequence[RateLimitItem], *key: str) -> None:
        for item in items:
            if not self._limiter.hit(item, *key):
                raise RateLimitedError(scope, self._limiter.get_window_stats(item, *key).reset_time)
