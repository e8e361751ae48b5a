"""How often each caller may call: moving-window limits per client address, per signed-in user, and tighter ones on
login and sign-up, so a password cannot be guessed at speed and one caller cannot take the API from the others.

The counters live in this process (the `limits` library's memory storage): one gateway instance, one set of
counters. Requests over a limit are refused before anything is forwarded, so a flood costs the gateway a counter
update per request and the apps behind it nothing (load is shed, not queued). The client address is the peer of the
TCP connection: the gateway trusts no X-Forwarded-For (an untrusted client could name any address there).
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from contracts.users import normalise_email


class RateLimitedError(Exception):
    """Over a limit: the caller may try again in `retry_after_seconds` (when the oldest counted call leaves the
    window)."""

    def __init__(self, scope: str, retry_after_seconds: int) -> None:
        super().__init__(f"rate limit per {scope} reached")
        self.scope = scope
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class LimitSpecs:
    """Each limit in the `limits` notation: "20/second;600/minute" is both at once."""

    per_address: str
    per_subject: str
    login_per_account_and_address: str
    login_per_address: str
    sign_up_per_address: str


class RateLimits:
    def __init__(self, specs: LimitSpecs) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
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

    def count_login(self, address: str, email: str | None) -> None:
        """A login attempt: by address, and by the account tried from that address (so attempts on one account
        from one address are held back while its owner, elsewhere, can still log in)."""
        self._hit("address", self._login_per_address, "login", address)
        if email is not None:
            self._hit("account", self._login_per_account, "login-account", address, normalise_email(email))

    def count_sign_up(self, address: str) -> None:
        self._hit("address", self._sign_up_per_address, "sign-up", address)

    def _hit(self, scope: str, items: Sequence[RateLimitItem], *key: str) -> None:
        for item in items:
            if not self._limiter.hit(item, *key):
                reset_at = self._limiter.get_window_stats(item, *key).reset_time
                raise RateLimitedError(scope, max(1, math.ceil(reset_at - time.time())))
